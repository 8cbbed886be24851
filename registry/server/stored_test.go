package server

import (
	"encoding/json"
	"testing"
)

// storedResult.encode must produce what json.Marshal does.
func TestStoredResultEncode(t *testing.T) {
	for _, r := range []storedResult{
		{Body: json.RawMessage(`{"ok":true}`)},
		{ETag: `"v3"`, Body: json.RawMessage(`{"id":"k\u00e9y","n":[1,2]}`)},
		{ETag: `"<v&4>"`, Body: json.RawMessage(`null`)},
	} {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.encode(); string(got) != string(want) {
			t.Errorf("encode %+v = %s, want %s", r, got, want)
		}
	}
}
