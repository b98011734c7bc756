package awskms

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/cofferfs/coffer/keys/masterkey"
)

func TestParseURI(t *testing.T) {
	const keyARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	tests := []struct {
		name   string
		uri    string
		arn    string
		region string
	}{
		{"key ARN", "aws-kms://" + keyARN, keyARN, "eu-west-1"},
		{"alias ARN", "aws-kms://arn:aws:kms:us-east-2:111122223333:alias/coffer/app",
			"arn:aws:kms:us-east-2:111122223333:alias/coffer/app", "us-east-2"},
		{"upper-case scheme", "AWS-KMS://" + keyARN, keyARN, "eu-west-1"},
		{"China partition", "aws-kms://arn:aws-cn:kms:cn-north-1:111122223333:key/abc",
			"arn:aws-cn:kms:cn-north-1:111122223333:key/abc", "cn-north-1"},
		{"multi-region key", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/mrk-1a2b",
			"arn:aws:kms:eu-west-1:111122223333:key/mrk-1a2b", "eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseURI(tt.uri)
			require.NoError(t, err)
			assert.Equal(t, tt.arn, k.ARN)
			assert.Equal(t, tt.region, k.Region)
			assert.Equal(t, "aws-kms://"+tt.arn, k.URI())
		})
	}
}

func TestParseURIRefusals(t *testing.T) {
	tests := []struct {
		name, uri, want string
	}{
		{"no slashes", "aws-kms:arn:aws:kms:eu-west-1:111122223333:key/abc", "want aws-kms://"},
		{"not an ARN", "aws-kms://1234abcd-12ab", "must be a KMS key ARN"},
		{"bare key ID", "aws-kms://key/1234", "must be a KMS key ARN"},
		{"other service", "aws-kms://arn:aws:s3:eu-west-1:111122223333:key/abc", "not kms"},
		{"no region", "aws-kms://arn:aws:kms::111122223333:key/abc", "no region"},
		{"slash in region", "aws-kms://arn:aws:kms:evil.example/x:111122223333:key/abc",
			"region name"},
		{"user in region", "aws-kms://arn:aws:kms:x@127.0.0.1:111122223333:key/abc",
			"region name"},
		{"dot in region", "aws-kms://arn:aws:kms:evil.example:111122223333:key/abc",
			"region name"},
		{"upper case region", "aws-kms://arn:aws:kms:EU-WEST-1:111122223333:key/abc",
			"region name"},
		{"dash at the end", "aws-kms://arn:aws:kms:eu-west-:111122223333:key/abc",
			"region name"},
		{"short account", "aws-kms://arn:aws:kms:eu-west-1:1111:key/abc", "12 digits"},
		{"letters in account", "aws-kms://arn:aws:kms:eu-west-1:11112222333x:key/abc",
			"12 digits"},
		{"no key ID", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/", "key/ID"},
		{"other resource", "aws-kms://arn:aws:kms:eu-west-1:111122223333:grant/abc", "key/ID"},
		{"slash in key ID", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/a/b", "key/ID"},
		{"query", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc?x=1", "no query"},
		{"fragment", "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc#x", "no query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseURI(tt.uri)
			require.Error(t, err)
			assert.ErrorIs(t, err, masterkey.ErrMalformed)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

// TestEndpointStaysWithAWS resolves the endpoint the SDK picks for regions
// ParseURI accepts, and for ones it refuses: a region read from the volume
// config must not choose a host outside AWS's domains.
func TestEndpointStaysWithAWS(t *testing.T) {
	resolve := func(region string) *url.URL {
		ep, err := kms.NewDefaultEndpointResolverV2().ResolveEndpoint(context.Background(),
			kms.EndpointParameters{Region: aws.String(region)})
		require.NoError(t, err)
		return &ep.URI
	}
	for _, region := range []string{"eu-west-1", "us-gov-west-1", "cn-north-1",
		"us-iso-east-1", "attacker-1"} {
		k, err := ParseURI("aws-kms://arn:aws:kms:" + region + ":111122223333:key/abc")
		require.NoError(t, err)
		host := resolve(k.Region).Hostname()
		assert.True(t, strings.HasPrefix(host, "kms.") && (strings.HasSuffix(host,
			".amazonaws.com") || strings.HasSuffix(host, ".amazonaws.com.cn") ||
			strings.HasSuffix(host, ".c2s.ic.gov")), "region %s: host %s", region, host)
	}
	// What the refusal prevents: the SDK takes such a region as it is.
	assert.Equal(t, "127.0.0.1", resolve("x@127.0.0.1/").Hostname())
	_, err := ParseURI("aws-kms://arn:aws:kms:x@127.0.0.1/:111122223333:key/abc")
	require.ErrorIs(t, err, masterkey.ErrMalformed)
}

func TestRegistered(t *testing.T) {
	ref, err := masterkey.Parse("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc")
	require.NoError(t, err)
	assert.Equal(t, Scheme, ref.Kind)
	assert.Equal(t, "aws-kms://arn:aws:kms:eu-west-1:111122223333:key/abc", ref.URI)
	assert.Contains(t, masterkey.Supported(), Form)

	_, err = masterkey.Parse("aws-kms://nonsense")
	assert.ErrorIs(t, err, masterkey.ErrMalformed)
}

func TestCheckEndpoint(t *testing.T) {
	for _, ep := range []string{"http://127.0.0.1:4599", "https://kms.eu-west-1.amazonaws.com"} {
		assert.NoError(t, checkEndpoint(ep), ep)
	}
	for _, ep := range []string{"127.0.0.1:4599", "ftp://host", "http://", "http://u:p@host",
		"http://host/?q=1"} {
		assert.ErrorIs(t, checkEndpoint(ep), masterkey.ErrMalformed, ep)
	}
}
