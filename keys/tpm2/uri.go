//go:build linux

package tpm2

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"

	"github.com/cofferfs/coffer/keys/masterkey"
)

// Scheme is the URI scheme and the kind recorded in the config.
const Scheme = "tpm2"

// MaxPCR is the highest PCR index accepted (PC Client TPMs have 24 PCRs).
const MaxPCR = 23

// banks maps the bank names accepted in a URI to TPM hash algorithms.
var banks = map[string]tpm2.TPMIAlgHash{
	"sha1":   tpm2.TPMAlgSHA1,
	"sha256": tpm2.TPMAlgSHA256,
	"sha384": tpm2.TPMAlgSHA384,
	"sha512": tpm2.TPMAlgSHA512,
}

// DefaultBank is the PCR bank used when a URI names PCRs but no bank.
const DefaultBank = "sha256"

// policy is the PCR selection of a URI: no PCRs means no policy.
type policy struct {
	PCRs []uint
	Bank string
}

// parseURI parses a tpm2: URI whose scheme is in lower case.
func parseURI(uri string) (policy, error) {
	rest, ok := strings.CutPrefix(uri, Scheme+":")
	if !ok {
		return policy{}, fmt.Errorf("%w: %q is not a tpm2: URI", masterkey.ErrMalformed, uri)
	}
	if rest == "" {
		return policy{}, nil
	}
	query, ok := strings.CutPrefix(rest, "?")
	if !ok || strings.Contains(query, "#") {
		return policy{}, fmt.Errorf("%w: tpm2 URI %q: want tpm2: or tpm2:?pcrs=N,N&bank=sha256",
			masterkey.ErrMalformed, uri)
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return policy{}, fmt.Errorf("%w: tpm2 URI %q: %v", masterkey.ErrMalformed, uri, err)
	}
	var p policy
	for key, v := range values {
		if len(v) != 1 {
			return policy{}, fmt.Errorf("%w: tpm2 URI %q: %s given %d times",
				masterkey.ErrMalformed, uri, key, len(v))
		}
		switch key {
		case "pcrs":
			p.PCRs, err = parsePCRs(v[0])
		case "bank":
			p.Bank = v[0]
			if _, ok := banks[p.Bank]; !ok {
				err = fmt.Errorf("unknown PCR bank %q (want sha1, sha256, sha384 or sha512)", p.Bank)
			}
		default:
			err = fmt.Errorf("unknown attribute %q (want pcrs and bank)", key)
		}
		if err != nil {
			return policy{}, fmt.Errorf("%w: tpm2 URI %q: %v", masterkey.ErrMalformed, uri, err)
		}
	}
	if len(p.PCRs) == 0 {
		return policy{}, fmt.Errorf("%w: tpm2 URI %q: a bank needs pcrs", masterkey.ErrMalformed,
			uri)
	}
	if p.Bank == "" {
		p.Bank = DefaultBank
	}
	return p, nil
}

// parsePCRs parses a comma-separated list of PCR indexes and returns them
// sorted without duplicates.
func parsePCRs(s string) ([]uint, error) {
	var pcrs []uint
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.ParseUint(f, 10, 8)
		if err != nil || n > MaxPCR || (len(f) > 1 && f[0] == '0') {
			return nil, fmt.Errorf("PCR %q is not a number from 0 to %d", f, MaxPCR)
		}
		pcrs = append(pcrs, uint(n))
	}
	slices.Sort(pcrs)
	return slices.Compact(pcrs), nil
}

// uri returns the canonical URI of p.
func (p policy) uri() string {
	if len(p.PCRs) == 0 {
		return Scheme + ":"
	}
	return Scheme + ":?pcrs=" + p.pcrList() + "&bank=" + p.Bank
}

// pcrList returns the PCR indexes as "0,7".
func (p policy) pcrList() string {
	s := make([]string, len(p.PCRs))
	for i, n := range p.PCRs {
		s[i] = strconv.FormatUint(uint64(n), 10)
	}
	return strings.Join(s, ",")
}

// canonical implements masterkey.Kind.Canonical.
func canonical(uri string) (string, error) {
	p, err := parseURI(uri)
	if err != nil {
		return "", err
	}
	return p.uri(), nil
}
