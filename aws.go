package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// Amazon OpenSearch Service: with CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED the domain
// authenticates each request by its AWS Signature Version 4, made with the credentials the AWS
// SDK's default chain finds (IRSA's web identity, the environment, the instance role). The
// signing is the SDK's own: canonical requests are easy to get subtly wrong, and AWS maintains
// that signer. See https://docs.aws.amazon.com/opensearch-service/latest/developerguide/ac.html
// and docs/aws.md.

// awsService is the signing name of Amazon OpenSearch Service domains (OpenSearch Serverless,
// which has no snapshot API, is "aoss" and refused by the configuration).
const awsService = "es"

// awsCredentialsTimeout bounds the first credentials lookup at start: a web identity exchange
// with STS takes well under a second, and a sidecar that cannot sign must say so, not hang.
const awsCredentialsTimeout = 15 * time.Second

// awsExpiryWindow is how long before their expiry cached credentials are renewed, so that no
// request goes out signed with credentials that expire while it is under way or retried.
const awsExpiryWindow = 5 * time.Minute

// awsSigning is the one place that connects the signing to the clients: it returns next
// unchanged unless CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED is set, else next wrapped in a
// sigV4Transport whose credentials were found once already (so that a pod without any fails
// at start, with a sentence naming what to set). Wrap the transport the clients send through
// (newESClients' *http.Transport) with it, inside any RoundTripper that adds headers, such as
// opaqueID: whatever changes a request after it was signed breaks its signature.
func awsSigning(ctx context.Context, cfg config, next http.RoundTripper) (http.RoundTripper, error) {
	if !cfg.AWSEnabled {
		return next, nil
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx,
		awsconfig.WithRegion(cfg.AWSRegion),
		awsconfig.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = awsExpiryWindow }))
	if err != nil {
		return nil, fmt.Errorf("CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: the AWS SDK could not read its configuration (%v); fix AWS_PROFILE, AWS_CONFIG_FILE or the file it names, or unset them", err)
	}
	creds := awsCfg.Credentials
	if creds == nil {
		creds = aws.AnonymousCredentials{} // Retrieve fails below, with the sentence
	}
	cache, ok := creds.(*aws.CredentialsCache)
	if !ok { // LoadDefaultConfig caches already; this keeps the refresh explicit
		cache = aws.NewCredentialsCache(creds, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = awsExpiryWindow })
	}
	lookup, cancel := context.WithTimeout(ctx, awsCredentialsTimeout)
	defer cancel()
	if _, err := cache.Retrieve(lookup); err != nil {
		return nil, fmt.Errorf("CAMUNDA_OPTIMIZE_OPENSEARCH_AWS_ENABLED: the AWS SDK found no credentials to sign with (%v); give the pod an IAM role for its service account (EKS sets AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run it on an instance with a role", err)
	}
	return &sigV4Transport{next: next, signer: v4.NewSigner(), credentials: cache, region: cfg.AWSRegion}, nil
}

// sigV4Transport signs each request with AWS Signature Version 4 for Amazon OpenSearch Service,
// then sends it through next. It must be the last RoundTripper before the network.
type sigV4Transport struct {
	next        http.RoundTripper
	signer      *v4.Signer
	credentials aws.CredentialsProvider // an *aws.CredentialsCache: refreshed before expiry
	region      string
}

// RoundTrip signs a copy of r (a RoundTripper must not change the request) and sends it. The
// body is read whole, as its SHA-256 is part of the signature: it is re-attached, with GetBody
// for a resend, and its hex hash goes into x-amz-content-sha256, which Amazon OpenSearch expects.
func (t *sigV4Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := drainBody(r)
	if err != nil {
		return nil, fmt.Errorf("signing %s %s for AWS: reading the request body: %w", r.Method, r.URL.Path, err)
	}
	signed := r.Clone(r.Context())
	signed.Body, signed.GetBody, signed.ContentLength = nil, nil, int64(len(body))
	if len(body) > 0 {
		signed.Body = io.NopCloser(bytes.NewReader(body))
		signed.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	signed.Header.Set("X-Amz-Content-Sha256", payloadHash)
	creds, err := t.credentials.Retrieve(r.Context())
	if err != nil {
		return nil, fmt.Errorf("signing %s %s for AWS: renewing the AWS credentials: %w", r.Method, r.URL.Path, err)
	}
	if err := t.signer.SignHTTP(r.Context(), creds, signed, payloadHash, awsService, t.region, time.Now()); err != nil {
		return nil, fmt.Errorf("signing %s %s for AWS: %w", r.Method, r.URL.Path, err)
	}
	return t.next.RoundTrip(signed)
}

// drainBody reads and closes r's body (a RoundTripper closes it, even on errors); nil for none.
func drainBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	defer r.Body.Close()
	return io.ReadAll(r.Body)
}

// awsServerlessSuffix ends the endpoints of OpenSearch Serverless collections, which have no
// snapshot API: https://docs.aws.amazon.com/opensearch-service/latest/developerguide/serverless-genref.html
const awsServerlessSuffix = ".aoss.amazonaws.com"

// serverlessHost tells whether a host name (without port) is an OpenSearch Serverless
// collection's.
func serverlessHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return strings.HasSuffix(host, awsServerlessSuffix)
}
