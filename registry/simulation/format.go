package simulation

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// Format renders a report as text: one line per stage, then the halt, the
// lockout check and the rollback.
func Format(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "users %d, broken new keys %d (%.2f%%), no new key %d; setup %s\n", r.Users, r.Broken, 100*float64(r.Broken)/float64(max(1, r.Users)), r.NoBKey, r.SetupTime.Round(time.Millisecond))
	fmt.Fprintf(&b, "dry run: held back per stage %v, locked out %d\n\n", r.DryRunHeldBack, r.DryRunLockedOut)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "pass\tstage\tcut over\theld back\tcohort\tfailure reports\taffected\thalted\tlocked out\tversions checked\tcut-over time")
	for _, s := range r.Stages {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\t%d\t%d\t%v\t%d\t%d\t%s\n", s.Plan, s.Stage, s.CutOver, s.HeldBack, s.Cohort, s.Signals, s.Affected, s.Halted, s.LockedOut, s.Versions, s.AdvanceTime.Round(time.Millisecond))
	}
	tw.Flush()
	b.WriteString("\n")
	if r.HaltFired {
		fmt.Fprintf(&b, "halt: fired by itself in %s after %d failure reports, %.2f%% of its cohort of %d affected\n", r.HaltStage, r.HaltAfterReports, 100*r.HaltShare, r.HaltCohort)
		fmt.Fprintf(&b, "verification sweep: %d new keys failed and were held back\n", r.SweepFailed)
	} else {
		b.WriteString("halt: never fired\n")
	}
	fmt.Fprintf(&b, "lockouts: at most %d users without a valid credential over %d view versions checked\n", r.MaxLockedOut, r.VersionsChecked)
	fmt.Fprintf(&b, "rollback: %d users back on the old set in %s, view version %d → %d, restored to the view before the migration: %v\n",
		r.RollbackUsers, r.RollbackTime.Round(time.Microsecond), r.RollbackVersions[0], r.RollbackVersions[1], r.RollbackRestored)
	return b.String()
}
