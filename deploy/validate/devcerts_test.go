package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// devCerts runs ../dev-certs.sh on dir with ROTATE=rotate and CA_DIR=caDir; it needs sh and
// openssl (tests/lib/deploy.sh installs openssl).
func devCerts(t *testing.T, dir, caDir, rotate string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", filepath.Join("..", "dev-certs.sh"), dir)
	cmd.Env = append(os.Environ(), "ROTATE="+rotate, "CA_DIR="+caDir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// devFiles reads what dev-certs.sh wrote.
func devFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, name := range []string{"tls/ca.crt", "tls/tls.crt", "tls/tls.key", "admin-token/token"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		files[name] = data
	}
	return files
}

// checkDevFiles checks that the pair loads, that the CA signs the certificate for every name
// compose and the health check use, and that the token has the server's shape.
func checkDevFiles(t *testing.T, files map[string][]byte) {
	t.Helper()
	if _, err := tls.X509KeyPair(files["tls/tls.crt"], files["tls/tls.key"]); err != nil {
		t.Errorf("tls.crt and tls.key do not load as a pair: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(files["tls/ca.crt"]) {
		t.Fatalf("ca.crt holds no certificate")
	}
	block, _ := pem.Decode(files["tls/tls.crt"])
	if block == nil {
		t.Fatalf("tls.crt is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eventbus", "localhost", "127.0.0.1"} {
		opts := x509.VerifyOptions{DNSName: name, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("the certificate does not verify for %s: %v", name, err)
		}
	}
	if token := strings.TrimSpace(string(files["admin-token/token"])); !wellFormedToken.MatchString(token) {
		t.Errorf("admin token %q is not `ebt_` and 32 or more letters, digits, '-' or '_'", token)
	}
}

// Each run keeps or replaces exactly what its ROTATE says, and what it leaves loads.
func TestDevCertsScript(t *testing.T) {
	root := t.TempDir()
	dir, caDir := filepath.Join(root, "secrets"), filepath.Join(root, "ca")
	if out, err := devCerts(t, dir, caDir, ""); err != nil {
		t.Fatalf("dev-certs.sh: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(caDir, "ca.key")); err != nil {
		t.Errorf("the CA key is not in CA_DIR: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "ca")); !os.IsNotExist(err) {
		t.Errorf("with CA_DIR set, %s/ca exists (%v): the CA key would be in the volume eventbus mounts", dir, err)
	}
	before := devFiles(t, dir)
	checkDevFiles(t, before)

	cases := []struct {
		rotate  string
		changed []string
	}{
		{"", nil},
		{"tls", []string{"tls/tls.crt", "tls/tls.key"}},
		{"token", []string{"admin-token/token"}},
		{"all", []string{"tls/ca.crt", "tls/tls.crt", "tls/tls.key", "admin-token/token"}},
	}
	for _, c := range cases {
		t.Run("ROTATE="+c.rotate, func(t *testing.T) {
			if out, err := devCerts(t, dir, caDir, c.rotate); err != nil {
				t.Fatalf("dev-certs.sh: %v\n%s", err, out)
			}
			after := devFiles(t, dir)
			checkDevFiles(t, after)
			for name := range after {
				want := slices.Contains(c.changed, name)
				if got := !bytes.Equal(before[name], after[name]); got != want {
					t.Errorf("%s changed: %v, want %v", name, got, want)
				}
			}
			before = after
		})
	}
	if out, err := devCerts(t, dir, caDir, "everything"); err == nil || !strings.Contains(out, "ROTATE must be tls, token or all") {
		t.Errorf("ROTATE=everything: want a refusal, got %v:\n%s", err, out)
	}
}
