package migrate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/keydesk/keydesk/registry/client"
)

// Error is a refusal a person can act on: what the registry said, the plan
// field at fault (for a form to mark), and the next step. It wraps the
// registry's *client.APIError, so errors.As still finds the status.
type Error struct {
	// Code is the registry's refusal code (empty_cohort, unknown_key_set,
	// overlapping_migration, percent_out_of_range, invalid_transition, ...).
	Code string
	// Field is the plan field at fault: name, from_set, to_set, scope,
	// canary, stages, policy; or reason for a step; empty when none.
	Field   string
	Message string
	hint    string
	// desk is hint in the desktop app's words (its Migration screen's
	// fields and buttons) where hint names a command, a JSON field or an
	// API path; empty when hint needs no translation.
	desk string
	err  error
}

func (e *Error) Error() string {
	if e.Field != "" {
		return fmt.Sprintf("%s: %s", e.Field, e.Message)
	}
	return e.Message
}

// Hint is what to do next, in the command line's words.
func (e *Error) Hint() string { return e.hint }

// DeskHint is Hint in the desktop app's words: the Migration screen's
// fields and buttons rather than a keydesk command or a plan's JSON.
func (e *Error) DeskHint() string {
	if e.desk != "" {
		return e.desk
	}
	return e.hint
}

func (e *Error) Unwrap() error { return e.err }

// explain turns registry refusals into *Error with a field and a next
// step. plan, when set, is the plan that was refused.
func (s *Service) explain(ctx context.Context, err error, plan *Plan) error {
	if err == nil {
		return nil
	}
	var ae *client.APIError
	if !errors.As(err, &ae) {
		if msg, ok := client.Storage(err); ok {
			return &Error{Code: "storage", Message: msg, hint: "Nothing was changed. Try again once the registry's operator has fixed its storage.", err: err}
		}
		if errors.Is(err, client.ErrUnreachable) {
			return &Error{Code: "unreachable", Message: "the registry could not be reached (" + client.Cause(err) + ")",
				hint: "Check the network and that the registry is running; nothing was changed. Try again when it answers.", err: err}
		}
		return err
	}
	e := &Error{Code: ae.Code, Message: ae.Message, err: err}
	nothing := " Nothing was written."
	switch ae.Code {
	case "empty_cohort":
		e.Field = "scope"
		if strings.Contains(ae.Message, "canary") {
			e.Field = "canary"
			e.hint = "Name at least one active user or group in the canary, or give it a percent (for example 1)." + nothing
		} else {
			e.hint = "Set \"all\": true, or name active users or groups in the scope." + nothing
			e.desk = "Tick Everyone under Scope, or name active users or groups there." + nothing
		}
	case "unknown_key_set":
		e.Field = "to_set"
		if plan != nil && strings.Contains(ae.Message, fmt.Sprintf("%q", plan.From)) {
			e.Field = "from_set"
		}
		e.hint = "Check the spelling, or create the set and put keys in it first (enrol with key_sets, or POST /v1/key-sets)."
		e.desk = "Check the spelling, or enrol keys into that key set first (a set exists once a key is enrolled into it)."
		if sets, err := s.C.KeySets(ctx); err == nil {
			var names []string
			for _, k := range sets {
				names = append(names, k.Name)
			}
			if len(names) > 0 {
				e.hint += " Key sets in the registry: " + strings.Join(names, ", ") + "."
				e.desk += " Key sets in the registry: " + strings.Join(names, ", ") + "."
			}
		}
		e.hint += nothing
		e.desk += nothing
	case "same_key_set":
		e.Field, e.hint = "to_set", "A migration goes from one key set to another: pick a different to_set."+nothing
		e.desk = "A migration goes from one key set to another: give a different To key set." + nothing
	case "missing_field":
		e.Field = "from_set"
		if strings.Contains(ae.Message, "reason") {
			e.Field = "reason"
		}
		e.hint = "Fill it in and try again." + nothing
	case "percent_out_of_range":
		e.Field = "stages"
		if strings.HasPrefix(ae.Message, "canary") {
			e.Field = "canary"
		}
		e.hint = "The canary percent is 0 ≤ p < 100; stages grow strictly, each 0 < p < 100; 100% is the complete step." + nothing
	case "invalid_policy":
		e.Field, e.hint = "policy", "min_verified_b_keys is 1-10, halt_threshold a share 0 < x ≤ 1 (0.01 = 1%), ages and grace periods not negative."+nothing
		e.desk = "Verified new keys per user is 1 to 10, the halt threshold more than 0 and at most 100%, days and hours not negative." + nothing
	case "unknown_user":
		e.Field = "scope"
		if plan != nil {
			for _, u := range plan.Canary.Users {
				if strings.Contains(ae.Message, u) && !slices.Contains(plan.Scope.Users, u) {
					e.Field = "canary"
				}
			}
		}
		e.hint = "Use registry user ids or external ids of active users (keydesk backup coverage lists them)." + nothing
		e.desk = "Use the ids of active users, as the Inventory screen lists them." + nothing
	case "canary_outside_scope":
		e.Field, e.hint = "canary", "Every canary user must be in the scope: add them to the scope or remove them from the canary."+nothing
	case "invalid_scope":
		e.Field, e.hint = "scope", "The scope takes all, users or groups; percentages belong to the canary and the stages."+nothing
		e.desk = "The scope takes everyone, users or groups; percentages belong to the canary and the stages." + nothing
	case "invalid_canary":
		e.Field, e.hint = "canary", "The canary is a small first cohort: users, groups and/or a percent below 100."+nothing
	case "overlapping_migration":
		e.Field, e.hint = "scope", "A user can be in one active migration at a time: finish or roll back the other migration, or narrow this scope."+nothing
	case "invalid_transition":
		e.hint = "States go draft → dry_run → canary → staged → complete; keydesk migrate show ID says where this one stands. To go back, roll back."
		e.desk = "Steps go draft → dry run → canary → staged → complete; the Readiness and steps tab shows where this one stands (press Refresh). To go back, use Roll back."
	case "grace_period":
		e.hint = "The current stage must run for the plan's grace period so failure reports can arrive; advance after it ends."
	case "migration_halted":
		e.hint = "Read the readiness report, help the blocked users, then advance with resume to re-run the halted stage (or roll back)."
		e.desk = "Read the readiness report, help the blocked users, then tick \"resume after a halt\" and press Advance to re-run the halted stage (or use Roll back)."
	case "invalid_state":
		e.hint = "Advance to dry_run, canary, staged or complete; rollback is its own step."
		e.desk = "Advance to dry run, canary, staged or complete; rolling back is the Roll back button."
	case "not_found":
		e.hint = "List the migrations (keydesk migrate list) for their ids."
		e.desk = "Press Refresh on the Migration screen and pick the migration from its list."
	case "wrong_type", "bad_json", "unknown_field":
		e.hint = "Check the plan's JSON against docs/migrations.md." + nothing
		e.desk = "Check the plan's fields on the New plan tab." + nothing
	}
	if e.hint == "" {
		switch ae.Status {
		case http.StatusUnauthorized, http.StatusForbidden:
			e.hint = "Planning, advancing, halting and rolling back need an admin token (keydesk login); helpdesk tokens can read readiness and dry runs."
			e.desk = "Planning, advancing, halting and rolling back need an admin's registry token (store one on the Settings screen); helpdesk tokens can read readiness and dry runs."
		case http.StatusUnprocessableEntity, http.StatusBadRequest:
			e.hint = "Correct the request and try again." + nothing
		}
	}
	return e
}
