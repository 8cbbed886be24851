package osdirs

import "os"

// data is %LOCALAPPDATA%.
func data() (string, error) { return os.UserCacheDir() }

// state is %LOCALAPPDATA%.
func state() (string, error) { return os.UserCacheDir() }
