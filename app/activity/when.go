package activity

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseTime reads a bound of a time range as a person writes it: RFC 3339;
// a local date and time ("2026-12-05 14:30", seconds optional); a local
// date, which with end set means the end of that day; or a span back from
// now ("36h", "90m", "7d"). An empty string is the zero time (no bound).
func ParseTime(s string, end bool, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	for _, f := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02T15:04"} {
		if t, err := time.ParseInLocation(f, s, time.Local); err == nil {
			return t, nil
		}
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.Local); err == nil {
		if end {
			t = t.Add(24*time.Hour - time.Nanosecond)
		}
		return t, nil
	}
	if d, err := ParseSpan(s); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: write a date as YYYY-MM-DD, optionally with HH:MM, or a span back from now such as 36h or 7d", s)
}

// ParseSpan reads a positive length of time: a Go duration ("36h", "90m")
// or a number of days ("7d").
func ParseSpan(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.ParseUint(n, 10, 16)
		if err == nil && days > 0 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return d, nil
	}
	return 0, fmt.Errorf("%q is not a length of time: write it like 36h, 90m or 7d", s)
}
