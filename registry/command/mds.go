package command

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/keydesk/keydesk/registry/mds"
	"github.com/keydesk/keydesk/registry/store/sqlstore"
)

// mdsUpdate: keydesk-registry mds update --file BLOB. Verifies a FIDO
// Metadata Service v3 BLOB (registry/mds: x5c chain to the FIDO Alliance
// root, signature, nextUpdate) and stores its FIDO2 entries in the
// registry, where they name credentials' models in the inventory and in
// migration readiness reports and add attestation roots.
func mdsUpdate(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("mds update", flag.ContinueOnError)
	var c common
	c.flags(fs)
	file := fs.String("file", "", "the BLOB as downloaded from the FIDO Metadata Service (https://mds3.fidoalliance.org/)")
	rootF := fs.String("trust-root", "", "PEM root to verify the BLOB against instead of the embedded GlobalSign roots (tests, private mirrors)")
	if err := parse(fs, args, stdout); err != nil {
		return err
	}
	if *file == "" {
		return fmt.Errorf("%w: --file is required\n%s", ErrUsage, usage)
	}
	blob, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("reading the mds blob: %w", err)
	}
	opt := mds.Options{Now: time.Now()}
	if *rootF != "" {
		if opt.Roots, err = readRoots(*rootF); err != nil {
			return err
		}
	}
	set, err := mds.Verify(blob, opt)
	if err != nil {
		return err
	}
	entries, err := json.Marshal(set)
	if err != nil {
		return err
	}
	st, _, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	if _, _, err := st.Write(ctx, "cli:mds-update", nil, func(tx *sqlstore.Tx) (sqlstore.Result, error) {
		return sqlstore.Result{}, tx.PutMDS(sqlstore.MDSBlob{Number: set.Number, NextUpdate: set.NextUpdate, SHA256: set.SHA256, Entries: entries})
	}); err != nil {
		if errors.Is(err, sqlstore.ErrMDSOlder) {
			return fmt.Errorf("%w: %w", mds.ErrOlder, err)
		}
		return fmt.Errorf("storing the mds blob: %w", err)
	}
	fmt.Fprintf(stdout, "loaded FIDO metadata BLOB no %d (next update %s): %d FIDO2 models\n", set.Number, set.NextUpdate.Format(time.DateOnly), len(set.Entries))
	return nil
}

func readRoots(name string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("reading --trust-root: %w", err)
	}
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("--trust-root: %w", err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("--trust-root: no PEM certificate found")
	}
	return out, nil
}
