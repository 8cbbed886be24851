package idp

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// Secrets gives a connector the secrets it needs (a client secret, a
// certificate key, an admin token) by name, from the OS keyring; they are
// never kept in the settings file.
type Secrets interface {
	Secret(name string) (string, error)
}

// Config is one configured provider as the settings keep it: its kind
// ("entra", "kratos"), the name the desk shows, and the kind's own settings.
type Config struct {
	Kind     string          `json:"kind"`
	Name     string          `json:"name"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

// OpenFunc makes a connector from its configuration.
type OpenFunc func(cfg Config, s Secrets) (Connector, error)

var (
	kindsMu sync.Mutex
	kinds   = map[string]OpenFunc{}
)

// RegisterKind makes a connector kind available to Open; connector
// packages call it from init, as database/sql drivers do.
func RegisterKind(kind string, open OpenFunc) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, dup := kinds[kind]; dup {
		panic("idp: kind registered twice: " + kind)
	}
	kinds[kind] = open
}

// Kinds lists the registered connector kinds, sorted.
func Kinds() []string {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	out := make([]string, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Open makes the connector cfg describes.
func Open(cfg Config, s Secrets) (Connector, error) {
	kindsMu.Lock()
	open := kinds[cfg.Kind]
	kindsMu.Unlock()
	if open == nil {
		return nil, fmt.Errorf("identity provider %q: unknown kind %q", cfg.Name, cfg.Kind)
	}
	return open(cfg, s)
}
