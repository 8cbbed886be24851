package validity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/keydesk/keydesk/registry"
)

// ErrUnreachable: the registry could not be reached, answered 5xx or 429,
// or its answer was cut short. The replica keeps its last view.
var ErrUnreachable = errors.New("registry unreachable")

// APIError is a 4xx answer from the registry (a bad token is 401, a token
// without the authserver role 403).
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("registry: %d %s: %s", e.Status, e.Code, e.Message)
}

// api is the replica's few calls to the registry.
type api struct {
	base, token string
	hc          *http.Client
}

// maxPage bounds one feed page or one user's view read into memory; the
// whole view is streamed and has no bound.
const maxPage = 64 << 20

// open sends a request and returns the body of a 2xx answer.
func (a *api) open(ctx context.Context, method, path string, body []byte, hdr map[string]string) (io.ReadCloser, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := a.hc.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		return res.Body, res.StatusCode, nil
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests {
		return nil, res.StatusCode, fmt.Errorf("%w: %s %s: status %d", ErrUnreachable, method, path, res.StatusCode)
	}
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	json.Unmarshal(raw, &e)
	return nil, res.StatusCode, &APIError{Status: res.StatusCode, Code: e.Code, Message: e.Message}
}

func (a *api) getJSON(ctx context.Context, path string, out any) error {
	body, _, err := a.open(ctx, "GET", path, nil, nil)
	if err != nil {
		return err
	}
	defer body.Close()
	raw, err := io.ReadAll(io.LimitReader(body, maxPage+1))
	if err != nil {
		return fmt.Errorf("%w: reading %s: %w", ErrUnreachable, path, err)
	}
	if len(raw) > maxPage {
		return fmt.Errorf("registry answer to %s over %d bytes", path, maxPage)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// feedPage is one page of GET /v1/changes.
type feedPage struct {
	Changes []registry.Change `json:"changes"`
	Cursor  int64             `json:"cursor,string"`
	Head    int64             `json:"head,string"`
	More    bool              `json:"more"`
}

func (a *api) changes(ctx context.Context, after int64, limit int) (feedPage, error) {
	var p feedPage
	err := a.getJSON(ctx, "/v1/changes?after="+strconv.FormatInt(after, 10)+"&limit="+strconv.Itoa(limit), &p)
	return p, err
}

func (a *api) userValidity(ctx context.Context, userID string) (registry.Validity, error) {
	var v registry.Validity
	err := a.getJSON(ctx, "/v1/validity?user_id="+url.QueryEscape(userID), &v)
	return v, err
}

// wholeValidity streams GET /v1/validity into f, row by row, and returns the
// view's version.
func (a *api) wholeValidity(ctx context.Context, f func(registry.ValidCredential) error) (int64, error) {
	body, _, err := a.open(ctx, "GET", "/v1/validity", nil, nil)
	if err != nil {
		return 0, err
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	bad := func(err error) (int64, error) {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return 0, fmt.Errorf("%w: validity view cut short: %w", ErrUnreachable, err)
		}
		return 0, fmt.Errorf("decoding validity view: %w", err)
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return bad(fmt.Errorf("not an object: %v", err))
	}
	var version int64
	seenVersion := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return bad(err)
		}
		switch t {
		case "version":
			if err := dec.Decode(&version); err != nil {
				return bad(err)
			}
			seenVersion = true
		case "credentials":
			if t, err := dec.Token(); err != nil || t != json.Delim('[') {
				if t == nil && err == nil {
					continue // null
				}
				return bad(fmt.Errorf("credentials is not a list: %v", err))
			}
			for dec.More() {
				var c registry.ValidCredential
				if err := dec.Decode(&c); err != nil {
					return bad(err)
				}
				if err := f(c); err != nil {
					return 0, err
				}
			}
			if _, err := dec.Token(); err != nil {
				return bad(err)
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return bad(err)
			}
		}
	}
	if _, err := dec.Token(); err != nil {
		return bad(err)
	}
	if !seenVersion {
		return bad(errors.New("no version"))
	}
	return version, nil
}
