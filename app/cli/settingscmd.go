package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keydesk/keydesk/app/settings"
)

// settingsCmd is "keydesk settings": show (the default), set, path.
func settingsCmd(e *env) *cobra.Command {
	sub := func(use, short string) *cobra.Command {
		name, _, _ := strings.Cut(use, " ")
		return &cobra.Command{Use: use, Short: short, RunE: func(_ *cobra.Command, args []string) error { return runSettings(e, name, args) }}
	}
	c := &cobra.Command{Use: "settings [show|set NAME=VALUE...|path]", Short: "show or change this desk's settings (registry URL, policies, practice mode)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown settings subcommand %q: show, set, path", args[0])
			}
			return nil
		}, RunE: func(_ *cobra.Command, args []string) error { return runSettings(e, "show", args) }}
	c.AddCommand(sub("show", "every setting and its value"), sub("set NAME=VALUE...", "change settings; the whole file is checked before it is saved"), sub("path", "the settings file's path"))
	return c
}

// runSettings: keydesk settings [show] [--json] | set NAME=VALUE... | path.
// The same settings the desktop app's Settings screen edits; the registry
// token is not one of them (it lives in the keyring: keydesk login).
func runSettings(e *env, sub string, pos []string) error {
	path, err := settings.DefaultPath()
	if err != nil {
		return err
	}
	switch sub {
	case "path":
		fmt.Fprintln(e.stdout, path)
		return nil
	case "show":
		if len(pos) > 0 {
			return usagef("settings show takes no arguments")
		}
		s, err := settings.Load(path)
		if err != nil {
			return err
		}
		if e.json {
			return e.printJSON(s)
		}
		fields, err := settingFields(s)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(fields))
		for n := range fields {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			fmt.Fprintf(e.stdout, "%s = %s\n", n, showSetting(fields[n]))
		}
		return nil
	case "set":
		if len(pos) == 0 {
			return usagef("settings set needs NAME=VALUE, for example: keydesk settings set rp_id=example.org")
		}
		s, err := settings.Load(path)
		if err != nil {
			return err
		}
		next, err := applySettings(s, pos)
		if err != nil {
			return err
		}
		// Save validates the whole file and writes it atomically, so a
		// refused change leaves the old settings in place.
		if err := settings.Save(path, next); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "saved %s\n", path)
		return nil
	}
	return usagef("unknown settings subcommand %q: show, set, path", sub)
}

// settingFields is s as its JSON fields by name, every one present (the
// file omits some when empty).
func settingFields(s settings.Settings) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	v := reflect.ValueOf(s)
	for i := 0; i < v.NumField(); i++ {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		b, err := json.Marshal(v.Field(i).Interface())
		if err != nil {
			return nil, err
		}
		m[name] = b
	}
	return m, nil
}

func showSetting(v json.RawMessage) string {
	var list []string
	if t := bytes.TrimSpace(v); len(t) > 0 && (t[0] == '[' || string(t) == "null") && json.Unmarshal(v, &list) == nil {
		if len(list) == 0 {
			return "(none)"
		}
		return strings.Join(list, ",")
	}
	var str string
	if json.Unmarshal(v, &str) == nil {
		if str == "" {
			return "(empty)"
		}
		return str
	}
	return string(v)
}

// applySettings sets each NAME=VALUE on s: strings as written, numbers and
// booleans parsed, lists comma-separated (an empty value clears a list or a
// string).
func applySettings(s settings.Settings, assignments []string) (settings.Settings, error) {
	fields, err := settingFields(s)
	if err != nil {
		return s, err
	}
	for _, a := range assignments {
		name, value, ok := strings.Cut(a, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return s, usagef("%q is not NAME=VALUE", a)
		}
		cur, known := fields[name]
		if !known {
			names := make([]string, 0, len(fields))
			for n := range fields {
				names = append(names, n)
			}
			sort.Strings(names)
			return s, usagef("no setting named %q; the settings are: %s", name, strings.Join(names, ", "))
		}
		var enc []byte
		switch t := bytes.TrimSpace(cur); {
		case len(t) > 0 && (t[0] == '[' || string(t) == "null"):
			list := []string{}
			for _, item := range strings.Split(value, ",") {
				if item = strings.TrimSpace(item); item != "" {
					list = append(list, item)
				}
			}
			enc, _ = json.Marshal(list)
		case len(t) > 0 && t[0] == '"':
			enc, _ = json.Marshal(value)
		case string(t) == "true" || string(t) == "false":
			b, err := strconv.ParseBool(strings.TrimSpace(value))
			if err != nil {
				return s, usagef("%s takes true or false, not %q", name, value)
			}
			enc, _ = json.Marshal(b)
		default:
			n, err := strconv.Atoi(strings.TrimSpace(value))
			if err != nil {
				return s, usagef("%s takes a whole number, not %q", name, value)
			}
			enc, _ = json.Marshal(n)
		}
		fields[name] = enc
	}
	b, err := json.Marshal(fields)
	if err != nil {
		return s, err
	}
	var next settings.Settings
	if err := json.Unmarshal(b, &next); err != nil {
		return s, err
	}
	return next, nil
}
