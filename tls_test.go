package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"lockstep/internal/pgtest"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a server certificate for the DNS names given, returning
// the certificate and key in PEM.
func (ca *testCA) serverCert(t *testing.T, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// A source that takes TLS connections only: sslmode=verify-full with the
// right CA copies; a host name the certificate does not name, or another
// CA, is a one-line error naming the side (exit 2), and no password shows.
func TestTLSVerifyFull(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "lockstep test CA")
	cert, key := ca.serverCert(t, "localhost")
	srv := pgtest.NewServer(t, pgtest.WithTLS(cert, key))
	dir := t.TempDir()
	caFile, otherCA := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherCA, newTestCA(t, "another CA").pem, 0o644); err != nil {
		t.Fatal(err)
	}

	src := srv.NewDB(t)
	dst := pgtest.Get(t).Dest.NewDB(t)
	pgtest.Exec(t, src, "CREATE TABLE t (id int PRIMARY KEY, note text); INSERT INTO t SELECT g, 'n' || g FROM generate_series(1, 1000) g")
	pgtest.Exec(t, dst, "CREATE TABLE t (id int PRIMARY KEY, note text)")
	// The server refuses connections without TLS.
	if code, _, errOut := lockstep(t, context.Background(), "plan", "--source", withQuery(t, src, "", "sslmode", "disable"), "--dest", dst, "--table", "t"); code != 2 ||
		!strings.Contains(errOut, "no encryption") && !strings.Contains(errOut, "no pg_hba.conf entry") {
		t.Fatalf("without TLS: exit %d: %s", code, errOut)
	}

	verifyFull := func(host, rootCert string) string {
		return withQuery(t, src, host, "sslmode", "verify-full", "sslrootcert", rootCert)
	}
	ctx := context.Background()
	report := filepath.Join(dir, "report.json")
	code, out, errOut := lockstep(t, ctx, "copy", "--source", verifyFull("localhost", caFile), "--dest", dst, "--table", "t", "--report", report)
	if code != 0 || !strings.Contains(out, "rows=1000") {
		t.Fatalf("verify-full with the right CA and name: exit %d\n%s%s", code, out, errOut)
	}
	outputs := []string{out, errOut, readFile(t, report)}

	for _, c := range []struct {
		name, host, ca, want string
	}{
		{"wrong host name", "127.0.0.1", caFile, "TLS: the server's certificate does not verify (check sslrootcert, and that the host is a name the certificate gives): x509: cannot validate certificate for 127.0.0.1"},
		{"unknown CA", "localhost", otherCA, "TLS: the server's certificate does not verify (check sslrootcert, and that the host is a name the certificate gives): x509: certificate signed by unknown authority"},
	} {
		code, out, errOut := lockstep(t, ctx, "copy", "--source", verifyFull(c.host, c.ca), "--dest", dst, "--table", "t", "--report", report)
		if code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 ||
			!strings.HasPrefix(errOut, "lockstep: source: cannot connect to "+c.host) || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, want 2 and one line naming the source and %q\nstdout: %s\nstderr: %s", c.name, code, c.want, out, errOut)
		}
		outputs = append(outputs, out, errOut, readFile(t, report))
	}
	for _, o := range outputs {
		if strings.Contains(o, srv.Password()) || strings.Contains(o, url.QueryEscape(srv.Password())) {
			t.Errorf("password printed: %s", o)
		}
	}
}

// withQuery rewrites a postgres:// DSN: another host (unless empty) and
// query parameters set to the pairs given.
func withQuery(t *testing.T, dsn, host string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		port, _ := strconv.Atoi(u.Port())
		u.Host = host + ":" + strconv.Itoa(port)
	}
	q := u.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
