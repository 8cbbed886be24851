package cli

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keydesk/keydesk/app/activity"
	"github.com/keydesk/keydesk/registry/client"
)

func activityFlags(_ *env, fs *flag.FlagSet) {
	fs.String("actor", "", "only entries by this actor (a token's name), exactly")
	fs.String("action", "", "only entries of this action (like enrol, verification, key.status), exactly")
	fs.String("subject", "", "only entries about this key serial, registry user or key id, or holding this text")
	fs.String("since", "", "only entries at or after this time: YYYY-MM-DD [HH:MM], RFC 3339, or a span back from now (36h, 7d)")
	fs.String("until", "", "only entries at or before this time (a bare date means the end of that day)")
	fs.Int("limit", 100, "at most this many entries, newest first")
}

// runActivity: keydesk activity [filters] lists the registry's audit log,
// newest first, filtered as on the desktop app's Activity screen;
// keydesk activity verify checks its hash chain and signed checkpoints
// (exit 7 when it does not verify). Both need an admin token.
func runActivity(e *env, fs *flag.FlagSet, args []string) error {
	switch {
	case len(args) == 1 && args[0] == "verify":
		for _, f := range []string{"actor", "action", "subject", "since", "until"} {
			if flagValue(fs, f) != "" {
				return usagef("activity verify checks the whole log: it takes no --%s", f)
			}
		}
		return runActivityVerify(e)
	case len(args) > 0:
		return usagef("activity takes filters, or the subcommand verify: keydesk activity [--actor A] [--action X] [--subject S] [--since T] [--until T] | keydesk activity verify")
	}
	q, limit, err := activityQuery(fs)
	if err != nil {
		return err
	}
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	terms := activity.Resolve(e.ctx, conn.Client, q.Subject)
	pg, err := activity.Read(e.ctx, conn.Client, q, terms, 0, limit)
	if err != nil {
		return auditErr(conn.URL, err)
	}
	return printActivity(e, conn.URL, pg, limit)
}

// activityQuery is the query the filter flags ask for, and --limit.
func activityQuery(fs *flag.FlagSet) (activity.Query, int, error) {
	now := time.Now()
	q := activity.Query{Actor: strings.TrimSpace(flagValue(fs, "actor")), Action: strings.TrimSpace(flagValue(fs, "action")), Subject: strings.TrimSpace(flagValue(fs, "subject"))}
	var err error
	if q.Since, err = activity.ParseTime(flagValue(fs, "since"), false, now); err != nil {
		return q, 0, usagef("--since: %v", err)
	}
	if q.Until, err = activity.ParseTime(flagValue(fs, "until"), true, now); err != nil {
		return q, 0, usagef("--until: %v", err)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return q, 0, usagef("--until is before --since")
	}
	limit, _ := strconv.Atoi(flagValue(fs, "limit"))
	if limit < 1 {
		return q, 0, usagef("--limit must be at least 1")
	}
	return q, limit, nil
}

// printActivity prints one page of the audit log read from url.
func printActivity(e *env, url string, pg activity.Page, limit int) error {
	if e.json {
		out := struct {
			Registry string              `json:"registry"`
			Entries  []client.AuditEntry `json:"entries"`
			// More: older entries match too (raise --limit or narrow the
			// time range to see them).
			More bool `json:"more"`
		}{url, pg.Entries, pg.Next != 0}
		if out.Entries == nil {
			out.Entries = []client.AuditEntry{}
		}
		return e.printJSON(out)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	for _, en := range pg.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", en.Seq, en.Time.UTC().Format("2006-01-02 15:04:05Z"), en.Actor, en.Action, activity.Summary(en))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	more := ""
	if pg.Next != 0 {
		more = fmt.Sprintf("; older ones match too (raise --limit above %d to see them)", limit)
	}
	fmt.Fprintf(e.stdout, "%d entr%s shown, newest first (%d read)%s\n", len(pg.Entries), plural(len(pg.Entries), "y", "ies"), pg.Scanned, more)
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// count is n with its noun: "1 key", "3 keys".
func count(n int, one, many string) string {
	return strconv.Itoa(n) + " " + plural(n, one, many)
}

// runActivityVerify asks the registry to check its audit chain.
func runActivityVerify(e *env) error {
	conn, _, err := e.openRegistry()
	if err != nil {
		return err
	}
	defer conn.Close()
	rep, err := activity.Verify(e.ctx, conn.Client)
	if err != nil {
		return auditErr(conn.URL, err)
	}
	if e.json {
		if err := e.printJSON(rep); err != nil {
			return err
		}
	} else if rep.OK {
		fmt.Fprintf(e.stdout, "audit chain verified: %d entries, %d signed checkpoints, nothing altered or missing\n", rep.Entries, rep.Checkpoints)
	}
	if !rep.OK {
		return auditBroken{rep.Error}
	}
	return nil
}

// auditBroken: the audit chain did not verify (exit 7).
type auditBroken struct{ cause string }

func (a auditBroken) Error() string {
	return "the audit chain does NOT verify: " + a.cause
}
func (a auditBroken) Is(target error) bool { return target == errChecksFailed }
func (a auditBroken) Hint() string {
	return "The log may have been altered. Keep this registry's state as it is and tell your security team."
}

// auditErr explains a failed read of the audit log: a registry that did
// not answer, or a token that may not read it.
func auditErr(url string, err error) error {
	err = activity.Explain(err)
	if errors.Is(err, activity.ErrAdminOnly) {
		return hinted{err: err, hint: "Ask a keydesk admin to look, or store an admin token with: keydesk login"}
	}
	return reachable(url, err)
}
