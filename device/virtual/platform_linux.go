package virtual

// practiceSupported: practice mode's transports exist here.
func practiceSupported() error { return nil }
