package client

import (
	"context"
	"net/url"

	"github.com/keydesk/keydesk/registry"
)

// IDPLinkIn is a link to record (POST /v1/idp-links).
type IDPLinkIn struct {
	Provider     string `json:"provider"`
	MethodID     string `json:"method_id"`
	KeyID        string `json:"key_id"`
	CredentialID []byte `json:"credential_id"`
	Nonce        string `json:"nonce,omitempty"`
}

// RecordIDPLink records that a provider accepted a key's credential as a
// method. idemKey, when set, is the write's Idempotency-Key: a desk derives
// it from its own durable intent, so a write replayed after a crash is
// answered from the registry's record. Recording a link the registry holds
// already (same provider, method, key and credential) returns it.
func (c *Client) RecordIDPLink(ctx context.Context, in IDPLinkIn, idemKey string) (registry.IDPLink, error) {
	var l registry.IDPLink
	var hdr map[string]string
	if idemKey != "" {
		hdr = map[string]string{"Idempotency-Key": idemKey}
	}
	err := c.write(ctx, "POST", "/v1/idp-links", in, &l, hdr)
	return l, err
}

// DeleteIDPLink marks link id deleted: its method was deleted at the
// provider.
func (c *Client) DeleteIDPLink(ctx context.Context, id, idemKey string) (registry.IDPLink, error) {
	var l registry.IDPLink
	var hdr map[string]string
	if idemKey != "" {
		hdr = map[string]string{"Idempotency-Key": idemKey}
	}
	err := c.write(ctx, "POST", "/v1/idp-links/"+url.PathEscape(id)+"/delete", struct{}{}, &l, hdr)
	return l, err
}

// LinkQuery selects links; zero fields select all.
type LinkQuery struct{ KeyID, UserID, Provider string }

// IDPLinks lists links, oldest first.
func (c *Client) IDPLinks(ctx context.Context, q LinkQuery) ([]registry.IDPLink, error) {
	v := url.Values{}
	for k, s := range map[string]string{"key_id": q.KeyID, "user_id": q.UserID, "provider": q.Provider} {
		if s != "" {
			v.Set(k, s)
		}
	}
	p := "/v1/idp-links"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	var out struct {
		Links []registry.IDPLink `json:"links"`
	}
	_, _, err := c.do(ctx, "GET", p, nil, nil, &out)
	return out.Links, err
}

// ObserveIDP reports the methods a provider listed for a user.
func (c *Client) ObserveIDP(ctx context.Context, o registry.IDPObservation) error {
	return c.write(ctx, "POST", "/v1/idp-observations", o, nil, nil)
}

// IDPDrift reads every disagreement between the registry and the
// providers' last listings.
func (c *Client) IDPDrift(ctx context.Context) ([]registry.IDPDrift, error) {
	var out struct {
		Drift []registry.IDPDrift `json:"drift"`
	}
	_, _, err := c.do(ctx, "GET", "/v1/idp-drift", nil, nil, &out)
	return out.Drift, err
}
