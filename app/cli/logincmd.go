package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/keydesk/keydesk/app/regconn"
	"github.com/keydesk/keydesk/app/secrets"
	"github.com/keydesk/keydesk/app/settings"
)

func loginFlags(e *env, fs *flag.FlagSet) {
	fs.StringVar(&e.registryURL, "registry", "", "the registry's URL (default: the one in the settings)")
}

// runLogin reads a registry token from the terminal (echo off) or stdin,
// checks it against the registry and keeps it in the OS keyring. The token
// is never taken from an argument or the environment. The registry's URL
// becomes the desk's registry in the settings.
func runLogin(e *env, _ *flag.FlagSet, args []string) error {
	if len(args) > 0 {
		return usagef("login takes no arguments; the token is read from the terminal or stdin, never the command line")
	}
	s, path, err := e.settings()
	if err != nil {
		return err
	}
	url := strings.TrimRight(e.registryURL, "/")
	if url == "" {
		url = strings.TrimRight(s.RegistryURL, "/")
	}
	if url == "" {
		return usagef("name the registry: keydesk login --registry https://registry.example.org")
	}
	next := s
	next.RegistryURL = url
	if err := next.Validate(); err != nil {
		return err
	}
	tok, err := e.prompt.secret("Registry token for " + url)
	if err != nil {
		return err
	}
	if err := regconn.Login(e.ctx, secrets.Default(), url, s.RegistryCA, tok); err != nil {
		if errors.Is(err, regconn.ErrTokenRefused) {
			return hinted{err, "Check the token (an admin makes one with keydesk-registry token create) and run keydesk login again."}
		}
		return reachable(url, err)
	}
	if strings.TrimRight(s.RegistryURL, "/") != url {
		disk, err := settings.Load(path)
		if err != nil {
			return err
		}
		disk.RegistryURL = url
		if err := settings.Save(path, disk); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "token for %s stored in the system keyring; it is now this desk's registry (%s)\n", url, path)
		return nil
	}
	fmt.Fprintf(e.stdout, "token for %s stored in the system keyring\n", url)
	return nil
}
