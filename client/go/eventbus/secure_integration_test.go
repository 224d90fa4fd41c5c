//go:build integration

package eventbus_test

// The client against a server with TLS and tokens: a token made through TokenService (with the
// bootstrap admin token) runs a Runner over TLS; calls without a token, outside the token's
// grants, or after its revocation are refused with the exact codes.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/eventbus-dev/eventbus/client/go/eventbus"
	eventbusv1 "github.com/eventbus-dev/eventbus/client/go/gen/eventbus/v1"
)

const adminToken = "ebt_adminadminadminadminadminadminadmin00"

// pemOf encodes DER bytes as one PEM block of type kind.
func pemOf(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

// serverTLS writes a CA-signed certificate for 127.0.0.1 and its key into dir; returns their
// paths and a client TLS configuration that trusts only the CA.
func serverTLS(t *testing.T, dir string) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "eventbus go test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "eventbus"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	must(os.WriteFile(certFile, pemOf("CERTIFICATE", leafDER), 0o600))
	must(os.WriteFile(keyFile, pemOf("PRIVATE KEY", keyDER), 0o600))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemOf("CERTIFICATE", caDER))
	return certFile, keyFile, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}

// dialWith connects with opts, closing the client when the test ends.
func dialWith(t *testing.T, addr string, opts ...grpc.DialOption) *eventbus.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := eventbus.Dial(ctx, addr, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// publishCode publishes one order to ns and returns the call's status code.
func publishCode(c *eventbus.Client, ns, id string) codes.Code {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Publish(ctx, &eventbusv1.PublishRequest{Namespace: ns, Events: []*eventbusv1.CloudEvent{order(id)}})
	return status.Code(err)
}

func TestIntegrationRunnerOverTLSWithATokenFromTokenService(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, clientTLS := serverTLS(t, dir)
	adminFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(adminFile, []byte(adminToken), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "--tls-cert", certFile, "--tls-key", keyFile, "--admin-token-file", adminFile,
		"--token-cache-seconds", "0")
	admin := dialWith(t, srv.addr, eventbus.WithTLS(clientTLS), eventbus.WithToken(adminToken))
	ns := namespace(t)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tokens := eventbusv1.NewTokenServiceClient(admin.Conn())
	grants := []*eventbusv1.Grant{
		{Role: eventbusv1.Role_ROLE_LISTENER, Namespaces: ns},
		{Role: eventbusv1.Role_ROLE_PUBLISHER, Namespaces: ns},
		{Role: eventbusv1.Role_ROLE_SUBSCRIBER, Namespaces: ns},
	}
	created, err := tokens.CreateToken(ctx, &eventbusv1.CreateTokenRequest{Name: "go runner", Grants: grants})
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	client := dialWith(t, srv.addr, eventbus.WithTLS(clientTLS), eventbus.WithToken(created.GetSecret()))

	listener := registerStart(t, client, ns)
	publish(context.Background(), t, client, ns, order("1"))
	got := make(chan delivery, 10)
	stop := startRunner(t, &eventbus.Runner{
		Client:        client,
		Namespace:     ns,
		ConsumerGroup: "runners",
		Handler:       recordingHandler(got, nil),
		Logger:        quiet(),
	})
	d := next(t, got, deliveryTimeout, "the START notification over TLS")
	if err := stop(); err != nil {
		t.Fatalf("Run returned %v after cancel, want nil", err)
	}
	if d.n.GetListenerId() != listener.GetId() {
		t.Errorf("listener_id %q, want %q", d.n.GetListenerId(), listener.GetId())
	}

	anonymous := dialWith(t, srv.addr, eventbus.WithTLS(clientTLS))
	if code := publishCode(anonymous, ns, "2"); code != codes.Unauthenticated {
		t.Errorf("publish without a token: %s, want Unauthenticated", code)
	}
	if code := publishCode(client, ns+"-other", "3"); code != codes.PermissionDenied {
		t.Errorf("publish outside the token's grants: %s, want PermissionDenied", code)
	}
	if _, err := tokens.RevokeToken(ctx, &eventbusv1.RevokeTokenRequest{Id: created.GetToken().GetId()}); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if code := publishCode(client, ns, "4"); code != codes.Unauthenticated {
		t.Errorf("publish with the revoked token: %s, want Unauthenticated", code)
	}
}
