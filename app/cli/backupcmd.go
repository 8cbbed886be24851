package cli

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/backup"
	"github.com/keydesk/keydesk/app/escrow"
	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/settings"
)

// recipientList is a repeatable --recipient flag.
type recipientList []string

func (r *recipientList) String() string     { return strings.Join(*r, ",") }
func (r *recipientList) Set(s string) error { *r = append(*r, s); return nil }

// backupOpts are the flags of backup export.
type backupOpts struct {
	user, outPath string
	rcpts         recipientList
}

// backupCmd is "keydesk backup": coverage and export.
func backupCmd(e *env) *cobra.Command {
	var o backupOpts
	declare := func(fs *flag.FlagSet) {
		fs.StringVar(&o.user, "user", "", "one user (external id or registry id) instead of the whole organisation")
		fs.StringVar(&o.outPath, "out", "", "the bundle file to write (age-encrypted, armored)")
		fs.Var(&o.rcpts, "recipient", "an age recipient (age1…) to encrypt to, besides the settings' helpdesk_recipients; repeatable")
	}
	sub := func(use, short string, flags ...string) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, RunE: func(_ *cobra.Command, args []string) error { return runBackup(e, use, &o, args) }}
		addFlags(c, declare, flags...)
		return c
	}
	return group(e, "backup", "check every user has a backup key; export registrations as an age-encrypted bundle",
		"backup needs a subcommand: coverage, export",
		sub("coverage", "every user's primary and backup keys (exit 7 when someone lacks one)"),
		sub("export", "registrations as an age-encrypted bundle (--out FILE)", "user", "out", "recipient"),
	)
}

// runBackup: keydesk backup coverage | export [--user U] --out FILE.
func runBackup(e *env, sub string, o *backupOpts, pos []string) error {
	if len(pos) > 0 {
		return usagef("backup %s takes no arguments", sub)
	}
	conn, s, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	switch sub {
	case "coverage":
		return backupCoverage(e, conn)
	case "export":
		// A practice desk with no helpdesk recipient set encrypts to its
		// practice identity, which its restore opens.
		if s, _, err = e.helpdesk(s); err != nil {
			return err
		}
		return backupExport(e, conn, s, o)
	}
	return usagef("unknown backup subcommand %q (coverage, export)", sub)
}

// backupCoverage is backup coverage: exit 7 when someone lacks a key.
func backupCoverage(e *env, conn *regconn.Conn) error {
	c, err := backup.Coverage(e.ctx, conn.Client)
	if err != nil {
		return err
	}
	if e.json {
		if err := e.printJSON(c); err != nil {
			return err
		}
	} else {
		for _, u := range c.Users {
			if u.Covered {
				fmt.Fprintf(e.stdout, "  covered    %s (%d active keys)\n", u.ExternalID, u.ActiveKeys)
			} else {
				fmt.Fprintf(e.stdout, "  UNCOVERED  %s (%d active keys; missing %s)\n", u.ExternalID, u.ActiveKeys, strings.Join(u.Missing, ", "))
			}
		}
		fmt.Fprintf(e.stdout, "%s covered, %d without a primary and a backup key\n", count(c.Covered, "user", "users"), c.Uncovered)
	}
	if c.Uncovered > 0 {
		return errChecksFailed
	}
	return nil
}

// backupExport is backup export: the registrations, encrypted to the
// recipients named and the settings' helpdesk recipients.
func backupExport(e *env, conn *regconn.Conn, s settings.Settings, o *backupOpts) error {
	user, outPath, rcpts := &o.user, &o.outPath, o.rcpts
	if *outPath == "" {
		return usagef("backup export needs --out FILE")
	}
	var all []string
	seen := map[string]bool{}
	for _, r := range append(append([]string{}, s.HelpdeskRecipients...), rcpts...) {
		if r = strings.TrimSpace(r); r != "" && !seen[r] {
			seen[r] = true
			all = append(all, r)
		}
	}
	if len(all) == 0 {
		return usagef("backup export needs a recipient: --recipient age1… or helpdesk_recipients in the settings")
	}
	f, err := os.OpenFile(*outPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	sum, err := backup.Export(e.ctx, conn.Client, *user, all, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(*outPath)
		return err
	}
	if e.json {
		return e.printJSON(sum)
	}
	fmt.Fprintf(e.stdout, "exported %s: %s, %s, %s, %s, encrypted to %s, to %s\n",
		sum.Scope, count(sum.Users, "user", "users"), count(sum.Keys, "key", "keys"), count(sum.Credentials, "credential", "credentials"),
		count(sum.AuditEntries, "audit entry", "audit entries"), count(len(all), "recipient", "recipients"), *outPath)
	return nil
}

// runRestore: keydesk restore FILE, into the desk's (empty) registry, with
// the helpdesk identity from the keyring (a practice desk's own, when it
// has one: app/helpdeskid).
func runRestore(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) != 1 {
		return usagef("restore takes the bundle file: keydesk restore FILE")
	}
	s, _, err := e.settings()
	if err != nil {
		return err
	}
	b, err := readArg("bundle", args[0])
	if err != nil {
		return err
	}
	s, src, err := e.helpdesk(s)
	if err != nil {
		return err
	}
	id, err := identity(src)
	if err != nil {
		return fmt.Errorf("the helpdesk identity opens the bundle: %w", err)
	}
	conn, err := e.registry(s)
	if err != nil {
		return err
	}
	defer conn.Close()
	out, err := backup.Restore(e.ctx, conn.Client, bytes.NewReader(b), id)
	if errors.Is(err, escrow.ErrWrongIdentity) && src.Practice() {
		err = hinted{err, fmt.Sprintf("This practice desk opened the bundle with its own practice helpdesk identity (%s). "+
			"A bundle encrypted to the organisation's helpdesk needs its recipient in helpdesk_recipients (keydesk settings set) "+
			"and its identity in the keyring (keydesk recover identity).", src.Path())}
	}
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(out)
	}
	fmt.Fprintf(e.stdout, "restored %s bundle: %s, %s, %s; %s kept verbatim, %d of this registry's own chained after them\n",
		out.Scope, count(out.Users, "user", "users"), count(out.Keys, "key", "keys"), count(out.Credentials, "credential", "credentials"),
		count(out.AuditEntries, "audit entry", "audit entries"), out.Rechained)
	return nil
}
