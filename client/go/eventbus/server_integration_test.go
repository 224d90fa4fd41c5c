//go:build integration

package eventbus_test

// Starting and stopping a live eventbus server for the integration tests.
//
// The binary comes from EVENTBUS_BIN (tests/run.sh builds it). Without it the tests fail: they
// are never skipped. Each server gets its own temporary directory with its SQLite file; it binds
// 127.0.0.1:0 and writes the address it bound to --listen-addr-file, whose appearance with
// content is the readiness signal.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
)

const (
	// readyTimeout bounds the wait for the address file; readyPoll is how often it is read.
	readyTimeout = 30 * time.Second
	readyPoll    = 10 * time.Millisecond
	// stopTimeout bounds the wait for the server to exit after SIGTERM.
	stopTimeout = 15 * time.Second
)

// spans records the spans of every test; the global TracerProvider and TextMapPropagator are
// set once, before the first client is made, so that otelgrpc and the Runner use them.
var (
	spans     = tracetest.NewSpanRecorder()
	setupOnce sync.Once
)

func setupTelemetry() {
	setupOnce.Do(func() {
		otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
		otel.SetTextMapPropagator(propagation.TraceContext{})
	})
}

// lockedBuffer collects the server's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testServer is one eventbus server process.
type testServer struct {
	bin      string
	dir      string
	args     []string // after the listen and data file flags
	addr     string
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	output   *lockedBuffer
	stopOnce sync.Once
}

// serverBinary returns EVENTBUS_BIN, failing the test when it is unset or not a file.
func serverBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("EVENTBUS_BIN")
	if bin == "" {
		t.Fatal("EVENTBUS_BIN is not set: the integration tests need the eventbus server binary " +
			"(tests/run.sh builds it and sets EVENTBUS_BIN; by hand: EVENTBUS_BIN=$PWD/target/debug/eventbus " +
			"go test -tags integration ./...). They are never skipped.")
	}
	info, err := os.Stat(bin)
	if err != nil {
		t.Fatalf("EVENTBUS_BIN=%q: %v (give an absolute path: go test runs in the package directory)", bin, err)
	}
	if info.IsDir() {
		t.Fatalf("EVENTBUS_BIN=%q is a directory, want the eventbus binary", bin)
	}
	return bin
}

// startServer starts a server with a fresh data file on 127.0.0.1:0, and args, and stops it
// when the test ends.
func startServer(t *testing.T, args ...string) *testServer {
	t.Helper()
	setupTelemetry()
	s := &testServer{bin: serverBinary(t), dir: t.TempDir(), args: args}
	s.start(t, "127.0.0.1:0")
	t.Cleanup(func() { s.stop(t) })
	return s
}

// start runs the server on listen with the server's data file and waits until it is ready.
func (s *testServer) start(t *testing.T, listen string) {
	t.Helper()
	addrFile := filepath.Join(s.dir, "addr")
	if err := os.Remove(addrFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	s.output = &lockedBuffer{}
	s.exited = make(chan struct{})
	s.stopOnce = sync.Once{}
	args := []string{"serve",
		"--listen", listen,
		"--listen-addr-file", addrFile,
		"--data-file", filepath.Join(s.dir, "eventbus.db")}
	s.cmd = exec.Command(s.bin, append(args, s.args...)...)
	s.cmd.Env = serverEnv()
	s.cmd.Stdout = s.output
	s.cmd.Stderr = s.output
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	addr, err := s.waitForAddr(addrFile)
	if err != nil {
		s.kill()
		t.Fatalf("eventbus server did not become ready: %v\nserver output:\n%s", err, s.output.String())
	}
	s.addr = addr
	t.Logf("eventbus server (pid %d) ready on %s", s.cmd.Process.Pid, addr)
}

// waitForAddr polls addrFile until it holds a host:port, the server exits, or readyTimeout.
func (s *testServer) waitForAddr(addrFile string) (string, error) {
	deadline := time.Now().Add(readyTimeout)
	ticker := time.NewTicker(readyPoll)
	defer ticker.Stop()
	for {
		if content, err := os.ReadFile(addrFile); err == nil {
			if addr, ok := parseAddr(string(content)); ok {
				return addr, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s did not hold an address after %s", addrFile, readyTimeout)
		}
		select {
		case <-s.exited:
			return "", fmt.Errorf("server exited before it was ready: %v", s.waitErr)
		case <-ticker.C:
		}
	}
}

// parseAddr returns the host:port in an address file's content (a trailing newline and an
// http:// prefix are tolerated); false while the content is not a complete address.
func parseAddr(content string) (string, bool) {
	addr := strings.TrimPrefix(strings.TrimSpace(content), "http://")
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" || port == "0" {
		return "", false
	}
	return addr, true
}

// stop sends SIGTERM and waits for the server to exit; the test fails if it does not exit in
// time (it is then killed) or exits with an error.
func (s *testServer) stop(t *testing.T) {
	t.Helper()
	s.stopOnce.Do(func() {
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("sending SIGTERM to the server: %v", err)
		}
		select {
		case <-s.exited:
			if s.waitErr != nil {
				t.Errorf("eventbus server exited with %v after SIGTERM, want a clean exit\nserver output:\n%s",
					s.waitErr, s.output.String())
			}
		case <-time.After(stopTimeout):
			s.kill()
			t.Errorf("eventbus server did not exit within %s of SIGTERM; killed it\nserver output:\n%s",
				stopTimeout, s.output.String())
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.output.String())
		}
	})
}

// restart stops the server and starts it again on the same address and data file.
func (s *testServer) restart(t *testing.T) {
	t.Helper()
	s.stop(t)
	s.start(t, s.addr)
}

func (s *testServer) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
}

// serverEnv is the test's environment without EVENTBUS_* variables, so that for example an
// EVENTBUS_DATABASE_URL meant for other tests does not point the server elsewhere.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EVENTBUS_") {
			env = append(env, kv)
		}
	}
	return env
}

// dial connects to the server, closing the client when the test ends.
func dial(t *testing.T, addr string) *eventbus.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := eventbus.Dial(ctx, addr)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
