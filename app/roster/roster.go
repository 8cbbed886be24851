// Package roster reads the CSV of users an admin enrols in one sitting at the
// desk. A bad row is reported with its line and what to fix, and never stops
// the good rows from being enrolled; only a file whose header can't be
// trusted is refused whole.
//
// The format (RFC 4180 CSV, UTF-8, an optional byte-order mark):
//
//	external_id,display_name,email,groups,keys
//	u1001,Ada Lovelace,ada@example.org,eng;admins,2
//
// external_id is required and unique within the file; display_name and email
// are required; groups (separated by ';') and keys (how many keys to enrol,
// 1 to 4, default 2: a primary and a backup) are optional columns.
package roster

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits that keep a hostile or mistaken file from exhausting the desk.
const (
	MaxRows       = 100_000
	MaxFieldBytes = 512
	DefaultKeys   = 2
	MaxKeys       = 4
)

// Entry is one user to enrol.
type Entry struct {
	Line        int // line in the file, for messages
	ExternalID  string
	DisplayName string
	Email       string
	Groups      []string
	Keys        int
}

// RowError is a row that will not be enrolled, and why.
type RowError struct {
	Line   int
	Column string // empty when the row as a whole is wrong
	Msg    string
}

func (e *RowError) Error() string {
	if e.Column == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return fmt.Sprintf("line %d, column %s: %s", e.Line, e.Column, e.Msg)
}

// HeaderError means the file can't be used at all.
type HeaderError struct{ Msg string }

func (e *HeaderError) Error() string { return "roster header: " + e.Msg }

// Roster is what a file yielded: the entries to enrol and the rows rejected.
type Roster struct {
	Entries []Entry
	Errors  []*RowError
}

var columns = map[string]bool{"external_id": true, "display_name": true, "email": true, "groups": false, "keys": false}

// Parse reads a roster. It returns a *HeaderError (and no Roster) when the
// header is missing, has an unknown or repeated column, or lacks a required
// one; every other problem is a RowError in the result.
func Parse(r io.Reader) (*Roster, error) {
	cr := csv.NewReader(&bomSkipper{r: r})
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, &HeaderError{Msg: "the file is empty; the first line must name the columns: external_id,display_name,email[,groups][,keys]"}
	}
	if err != nil {
		return nil, &HeaderError{Msg: err.Error()}
	}
	idx := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		if _, known := columns[name]; !known {
			return nil, &HeaderError{Msg: fmt.Sprintf("unknown column %q (known: external_id, display_name, email, groups, keys)", h)}
		}
		if _, dup := idx[name]; dup {
			return nil, &HeaderError{Msg: fmt.Sprintf("column %q appears twice", name)}
		}
		idx[name] = i
	}
	for name, required := range columns {
		if _, ok := idx[name]; required && !ok {
			return nil, &HeaderError{Msg: fmt.Sprintf("missing required column %q", name)}
		}
	}

	out := &Roster{}
	seen := map[string]int{}
	for rows := 0; ; rows++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			out.Errors = append(out.Errors, &RowError{Line: pe.Line, Msg: "not valid CSV: " + pe.Err.Error()})
			continue
		}
		if err != nil {
			return out, fmt.Errorf("reading roster: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if rows >= MaxRows {
			out.Errors = append(out.Errors, &RowError{Line: line, Msg: fmt.Sprintf("more than %d rows; split the file", MaxRows)})
			break
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		e, rerr := entry(rec, idx, len(header), line)
		if rerr != nil {
			out.Errors = append(out.Errors, rerr)
			continue
		}
		if first, dup := seen[e.ExternalID]; dup {
			out.Errors = append(out.Errors, &RowError{Line: line, Column: "external_id", Msg: fmt.Sprintf("%q is already on line %d", e.ExternalID, first)})
			continue
		}
		seen[e.ExternalID] = line
		out.Entries = append(out.Entries, e)
	}
	return out, nil
}

func entry(rec []string, idx map[string]int, width, line int) (Entry, *RowError) {
	if len(rec) != width {
		return Entry{}, &RowError{Line: line, Msg: fmt.Sprintf("has %d fields, the header has %d", len(rec), width)}
	}
	get := func(col string) (string, *RowError) {
		i, ok := idx[col]
		if !ok {
			return "", nil
		}
		v := strings.TrimSpace(rec[i])
		if !utf8.ValidString(v) {
			return "", &RowError{Line: line, Column: col, Msg: "is not valid UTF-8; save the file as UTF-8"}
		}
		if len(v) > MaxFieldBytes {
			return "", &RowError{Line: line, Column: col, Msg: fmt.Sprintf("is longer than %d bytes", MaxFieldBytes)}
		}
		if strings.ContainsAny(v, "\x00\r\n") {
			return "", &RowError{Line: line, Column: col, Msg: "contains a line break or NUL"}
		}
		return v, nil
	}
	e := Entry{Line: line, Keys: DefaultKeys}
	var err *RowError
	if e.ExternalID, err = get("external_id"); err != nil {
		return Entry{}, err
	}
	if e.ExternalID == "" {
		return Entry{}, &RowError{Line: line, Column: "external_id", Msg: "is empty"}
	}
	if e.DisplayName, err = get("display_name"); err != nil {
		return Entry{}, err
	}
	if e.DisplayName == "" {
		return Entry{}, &RowError{Line: line, Column: "display_name", Msg: "is empty"}
	}
	if e.Email, err = get("email"); err != nil {
		return Entry{}, err
	}
	if a, perr := mail.ParseAddress(e.Email); perr != nil || a.Address != e.Email || a.Name != "" {
		return Entry{}, &RowError{Line: line, Column: "email", Msg: fmt.Sprintf("%q is not an email address like name@example.org", e.Email)}
	}
	groups, err := get("groups")
	if err != nil {
		return Entry{}, err
	}
	for _, g := range strings.Split(groups, ";") {
		if g = strings.TrimSpace(g); g != "" {
			e.Groups = append(e.Groups, g)
		}
	}
	keys, err := get("keys")
	if err != nil {
		return Entry{}, err
	}
	if keys != "" {
		n, perr := strconv.Atoi(keys)
		if perr != nil || n < 1 || n > MaxKeys {
			return Entry{}, &RowError{Line: line, Column: "keys", Msg: fmt.Sprintf("%q must be a whole number from 1 to %d", keys, MaxKeys)}
		}
		e.Keys = n
	}
	return e, nil
}

// bomSkipper drops a UTF-8 byte-order mark at the start of the stream, which
// spreadsheet programs write.
type bomSkipper struct {
	r    io.Reader
	done bool
}

func (b *bomSkipper) Read(p []byte) (int, error) {
	if b.done {
		return b.r.Read(p)
	}
	b.done = true
	head := make([]byte, 3)
	n, err := io.ReadFull(b.r, head)
	head = head[:n]
	if bytes.Equal(head, []byte{0xEF, 0xBB, 0xBF}) {
		head = nil
	}
	b.r = io.MultiReader(bytes.NewReader(head), b.r)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, err
	}
	return b.r.Read(p)
}
