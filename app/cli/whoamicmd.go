package cli

import (
	"flag"
	"fmt"
)

// runWhoami: keydesk whoami says which registry the desk uses and whose
// token it holds there (GET /v1/whoami): the token's name, its role and,
// for a self token, the user it is bound to. The desktop app picks its
// screens from the same answer.
func runWhoami(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("whoami takes no arguments")
	}
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	who, err := conn.Client.WhoAmI(e.ctx)
	if err != nil {
		return reachable(conn.URL, err)
	}
	out := struct {
		Registry string `json:"registry"`
		Embedded bool   `json:"embedded"`
		Token    string `json:"token"`
		Role     string `json:"role"`
		UserID   string `json:"user_id,omitempty"`
		User     string `json:"user,omitempty"` // the bound user's external id
	}{Registry: conn.URL, Embedded: conn.Embedded, Token: who.Name, Role: who.Role, UserID: who.UserID}
	if who.UserID != "" {
		if u, err := conn.Client.User(e.ctx, who.UserID); err == nil {
			out.User = u.ExternalID
		}
	}
	if e.json {
		return e.printJSON(out)
	}
	where := conn.URL
	if conn.Embedded {
		where = "the desk's embedded registry (" + conn.StateDir + ")"
	}
	fmt.Fprintf(e.stdout, "registry  %s\n", where)
	fmt.Fprintf(e.stdout, "token     %s\n", who.Name)
	fmt.Fprintf(e.stdout, "role      %s\n", who.Role)
	if who.UserID != "" {
		u := who.UserID
		if out.User != "" {
			u = out.User + " (" + who.UserID + ")"
		}
		fmt.Fprintf(e.stdout, "user      %s\n", u)
	}
	return nil
}
