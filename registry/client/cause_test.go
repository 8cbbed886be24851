package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestCause(t *testing.T) {
	// A port nothing listens on: the dial is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = http.Get("http://" + addr + "/v1/health")
	if got := Cause(fmt.Errorf("%w: %w", ErrUnreachable, err)); got != "connection refused" {
		t.Errorf("refused: Cause = %q", got)
	}
	// A listener that never answers: the request times out.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	hc := &http.Client{Timeout: 100 * time.Millisecond}
	_, err = hc.Get("http://" + ln.Addr().String() + "/v1/health")
	if got := Cause(fmt.Errorf("%w: %w", ErrUnreachable, err)); got != "no answer in time" {
		t.Errorf("timeout: Cause = %q", got)
	}
	// Anything else: the innermost message, without the prefix.
	if got := Cause(fmt.Errorf("%w: %w", ErrUnreachable, errors.New("tls: bad certificate"))); got != "tls: bad certificate" {
		t.Errorf("other: Cause = %q", got)
	}
	if got := Cause(context.Canceled); got != "context canceled" {
		t.Errorf("plain: Cause = %q", got)
	}
}

func TestStorage(t *testing.T) {
	for code, want := range map[string]string{
		"storage_full":  "the registry's disk is full — nothing was written; ask its operator to free space, then retry",
		"read_only":     "the registry's storage is read-only — nothing was written; ask its operator to make it writable, then retry",
		"storage_error": "the registry's storage failed — nothing was written; ask its operator to check its disk, then retry",
	} {
		err := fmt.Errorf("enrolling: %w", &UnavailableError{Status: 503, Code: code})
		if msg, ok := Storage(err); !ok || msg != want || Cause(err) != want {
			t.Errorf("%s: Storage = %q, %v; Cause = %q", code, msg, ok, Cause(err))
		}
		if !errors.Is(err, ErrUnreachable) {
			t.Errorf("%s: not ErrUnreachable, so queued work would not stay queued", code)
		}
	}
	if _, ok := Storage(fmt.Errorf("%w: status 500", ErrUnreachable)); ok {
		t.Error("a plain 500 taken for a storage fault")
	}
}
