package invui

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keydesk/keydesk/app/ui/uikit"
	"github.com/keydesk/keydesk/registry/client"
)

// TestScreens: the two screens, for admins and the helpdesk only, build
// without a registry and say so.
func TestScreens(t *testing.T) {
	ss := Screens()
	if len(ss) != 2 || ss[0].ID != "inventory" || ss[1].ID != "activity" {
		t.Fatalf("screens %+v", ss)
	}
	for _, s := range ss {
		for role, want := range map[uikit.Role]bool{uikit.Admin: true, uikit.Helpdesk: true, uikit.Self: false} {
			if got := s.Visible(&uikit.Env{Role: role}); got != want {
				t.Errorf("%s visible to %s: %v", s.ID, role, got)
			}
		}
		env := newEnv(t, nil, uikit.Admin)
		calls := make(chan struct{}, 8)
		env.Registry = func(context.Context) (*client.Client, error) {
			calls <- struct{}{}
			return nil, uikit.ErrNoRegistry
		}
		obj := s.Make(env)
		if obj == nil {
			t.Fatalf("%s built nothing", s.ID)
		}
		env.Window.SetContent(obj)
		wait(t, calls, s.ID+" asking for the registry")
	}
}

// TestBannerText: each way the registry can fail says what to do next.
func TestBannerText(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{uikit.ErrNoRegistry, "Settings"},
		{fmt.Errorf("listing users: %w", client.ErrUnreachable), "cannot be reached"},
		{&client.APIError{Status: 401, Code: "unauthorized"}, "token"},
		{fmt.Errorf("%w: not JSON", client.ErrBadResponse), "registry address"},
	} {
		if got := explain(c.err); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q", c.err, got)
		}
	}
}
