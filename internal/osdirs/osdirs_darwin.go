package osdirs

import "os"

// data is ~/Library/Application Support.
func data() (string, error) { return os.UserConfigDir() }

// state is ~/Library/Application Support.
func state() (string, error) { return os.UserConfigDir() }
