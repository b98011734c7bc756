// Package kmstest runs local-kms (github.com/nsmithuk/local-kms), a real
// implementation of the AWS KMS JSON API, for tests: each Server is its own
// process with its own data directory, reached only through 127.0.0.1.
package kmstest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Region and Account are those of the keys a Server creates.
const (
	Region  = "eu-west-2"
	Account = "111122223333"
)

// Binary is the local-kms executable Start runs; scripts/deps.sh installs
// it with go install.
const Binary = "local-kms"

// startTimeout bounds how long Start waits for the server to listen. It is
// a limit for a broken setup, not a delay: Start returns as soon as the
// port answers.
const startTimeout = 2 * time.Minute

// Server is a running local-kms.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:PORT.
	Endpoint string

	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
	once   sync.Once
}

// Start starts local-kms on a free loopback port and stops it when the test
// ends. Without the binary the test is skipped, or fails when CI is set.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := findBinary()
	if bin == "" {
		msg := "local-kms is not installed: run scripts/deps.sh or go install " +
			"github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	port := freePort(t)
	dir := t.TempDir()
	s := &Server{
		Endpoint: "http://127.0.0.1:" + strconv.Itoa(port),
		out:      &lockedBuffer{},
		exited:   make(chan struct{}),
	}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(os.Environ(),
		"PORT="+strconv.Itoa(port),
		"KMS_DATA_PATH="+filepath.Join(dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(dir, "no-seed.yaml"),
		"KMS_REGION="+Region,
		"KMS_ACCOUNT_ID="+Account,
	)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("failed to start local-kms: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.exited) }()
	t.Cleanup(s.Stop)

	if err := s.awaitListening(port); err != nil {
		t.Fatalf("local-kms did not start: %v; output:\n%s", err, s.out.String())
	}
	return s
}

// findBinary looks for local-kms in PATH, then in $GOBIN and $GOPATH/bin,
// where go install puts it.
func findBinary() string {
	if p, err := exec.LookPath(Binary); err == nil {
		return p
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, d := range filepath.SplitList(string(bytes.TrimSpace(out))) {
			dirs = append(dirs, filepath.Join(d, "bin"))
		}
	}
	for _, d := range dirs {
		p := filepath.Join(d, Binary)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("failed to find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// awaitListening polls the port until it accepts a connection, the process
// exits or startTimeout passes.
func (s *Server) awaitListening(port int) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d still closed after %s: %w", port, startTimeout, err)
		}
		select {
		case <-s.exited:
			return errors.New("local-kms exited")
		case <-tick.C:
		}
	}
}

// Stop kills the server and waits for it to exit. It is idempotent.
func (s *Server) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Kill()
		<-s.exited
	})
}

// Output returns what the server printed, for failure messages.
func (s *Server) Output() string { return s.out.String() }

// SetCredentials points the AWS SDK of this process and its children at
// fixed test credentials and away from the user's AWS files and the EC2
// metadata service, for the rest of the test.
func SetCredentials(t testing.TB) {
	t.Helper()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIACOFFERTEST000000")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "coffer-test-secret-not-a-real-key")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "no-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "no-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_KMS", "")
}

// Client returns a KMS client of the server, for setting up keys.
func (s *Server) Client() *kms.Client {
	return kms.New(kms.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider("AKIACOFFERTEST000000",
			"coffer-test-secret-not-a-real-key", ""),
	})
}

// CreateKey creates a symmetric encryption key and returns its ARN.
func (s *Server) CreateKey(t testing.TB) string {
	t.Helper()
	out, err := s.Client().CreateKey(context.Background(), &kms.CreateKeyInput{
		Description: aws.String("coffer test key"),
	})
	if err != nil {
		t.Fatalf("failed to create a KMS key: %v", err)
	}
	return aws.ToString(out.KeyMetadata.Arn)
}

// CreateAlias names the key keyARN alias/name and returns the alias ARN.
func (s *Server) CreateAlias(t testing.TB, name, keyARN string) string {
	t.Helper()
	_, err := s.Client().CreateAlias(context.Background(), &kms.CreateAliasInput{
		AliasName:   aws.String("alias/" + name),
		TargetKeyId: aws.String(keyARN),
	})
	if err != nil {
		t.Fatalf("failed to create alias %s: %v", name, err)
	}
	return "arn:aws:kms:" + Region + ":" + Account + ":alias/" + name
}

// DisableKey disables the key keyARN.
func (s *Server) DisableKey(t testing.TB, keyARN string) {
	t.Helper()
	_, err := s.Client().DisableKey(context.Background(), &kms.DisableKeyInput{
		KeyId: aws.String(keyARN),
	})
	if err != nil {
		t.Fatalf("failed to disable key %s: %v", keyARN, err)
	}
}

// lockedBuffer collects the server's output from its two pipes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
