package client

import (
	"context"
	"fmt"
	"net/url"
	"strconv"

	"github.com/keydesk/keydesk/registry"
)

// AuditEntry is one entry of the registry's audit log as GET /v1/audit
// shows it.
type AuditEntry = registry.AuditEntry

// AuditQuery selects a page of the audit log. With Newest set the page
// runs backwards from Before (the newest entries when Before is 0);
// otherwise forwards from After. Actor and Action match exactly; Limit is
// 1-1000 (the registry's default 100 when 0).
type AuditQuery struct {
	After  int64
	Before int64
	Newest bool
	Actor  string
	Action string
	Limit  int
}

// AuditPage is one page of the audit log. Next is the cursor of the
// following page (older ones when the query was Newest), 0 at the end.
type AuditPage struct {
	Entries []AuditEntry
	Next    int64
}

// Audit reads one page of the audit log (admin only).
func (c *Client) Audit(ctx context.Context, q AuditQuery) (AuditPage, error) {
	v := url.Values{}
	if q.Newest {
		v.Set("before", strconv.FormatInt(q.Before, 10))
	} else if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	if q.Actor != "" {
		v.Set("actor", q.Actor)
	}
	if q.Action != "" {
		v.Set("action", q.Action)
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out struct {
		Entries []AuditEntry `json:"entries"`
		Next    string       `json:"next"`
	}
	p := "/v1/audit"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	if _, _, err := c.do(ctx, "GET", p, nil, nil, &out); err != nil {
		return AuditPage{}, err
	}
	pg := AuditPage{Entries: out.Entries}
	if out.Next != "" {
		n, err := strconv.ParseInt(out.Next, 10, 64)
		if err != nil {
			return AuditPage{}, fmt.Errorf("%w: audit cursor %q", ErrBadResponse, out.Next)
		}
		pg.Next = n
	}
	return pg, nil
}
