package envelope

import (
	"context"
	"fmt"

	"github.com/cofferfs/coffer/keys"
	"github.com/cofferfs/coffer/keys/masterkey"
)

// Kind returns the masterkey.Kind of a kind whose masters newMaster makes
// from a URI and masterkey.Options.KMSEndpoint (the --kms-endpoint flag). The
// kind is recorded in the config under its scheme.
func Kind[M keys.Master](scheme, form string, canonical func(uri string) (string, error),
	newMaster func(ctx context.Context, uri, endpoint string) (M, error)) masterkey.Kind {
	return masterkey.Kind{
		Scheme:    scheme,
		Name:      scheme,
		Form:      form,
		Canonical: canonical,
		Enroll: func(ctx context.Context, ref masterkey.Ref, opts masterkey.Options) (
			keys.Enrollment, error) {
			m, err := newMaster(ctx, ref.URI, opts.KMSEndpoint)
			if err != nil {
				return keys.Enrollment{}, err
			}
			return keys.Enrollment{Kind: scheme, URI: ref.URI, Master: m}, nil
		},
		Open: func(ctx context.Context, entry keys.MasterEntry, opts masterkey.Options) (
			keys.Master, error) {
			m, err := newMaster(ctx, entry.URI, opts.KMSEndpoint)
			if err != nil {
				return nil, fmt.Errorf("master key %s: %w", entry.ID, err)
			}
			return m, nil
		},
	}
}

// Canonical parses uri with parse and returns the parsed key's canonical
// URI, for masterkey.Kind.Canonical.
func Canonical[K interface{ URI() string }](parse func(uri string) (K, error), uri string) (
	string, error) {
	k, err := parse(uri)
	if err != nil {
		return "", err
	}
	return k.URI(), nil
}
