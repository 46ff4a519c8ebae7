// Command callback-receiver is a partner's end of the Push Data Source, for
// trying batches locally: an HTTPS server on loopback, with a certificate
// of its own, that checks each callback as a partner should and prints it.
//
//	go run ./cmd/callback-receiver --key "$KEY" --ca-out data/receiver-ca.pem
//
// It writes its certificate to --ca-out (give it to `flatfiler serve
// --callback-ca`) and prints the URL to put in a batch's "callback". Each
// callback's JWT is verified with golang-jwt (HS256 with the partner's API
// key, issuer, audience, expiry, and the body's SHA-256 against the token's
// body_sha256 claim), and its Standard Webhooks signature is checked too.
// It answers 204 to a callback that verifies and 401 to one that does not.
// Like the rest of this program, it uses only what a partner has: the key.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claims are the callback JWT's claims, as flatfiler's README lists them.
type claims struct {
	jwt.RegisteredClaims
	BatchID    string `json:"batch_id"`
	BodySHA256 string `json:"body_sha256"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8443", "listen address")
	key := flag.String("key", os.Getenv("KEY"), "the partner's API key (default $KEY)")
	issuer := flag.String("issuer", "flatfiler", "the iss flatfiler signs with (serve --issuer)")
	audience := flag.String("audience", "demo.flatfiler.local", "the partner's domain (or id): the aud expected")
	caOut := flag.String("ca-out", "receiver-ca.pem", "where to write this receiver's certificate, for serve --callback-ca")
	flag.Parse()
	if *key == "" {
		fmt.Fprintln(os.Stderr, "callback-receiver: --key (or $KEY) is required")
		os.Exit(2)
	}
	if err := run(*addr, *key, *issuer, *audience, *caOut); err != nil {
		fmt.Fprintln(os.Stderr, "callback-receiver:", err)
		os.Exit(1)
	}
}

func run(addr, key, issuer, audience, caOut string) error {
	cert, err := selfSigned(caOut)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { receive(w, r, key, issuer, audience, log) }),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Printf("callback URL https://%s/callback (certificate in %s)\n", ln.Addr(), caOut)
	done := make(chan os.Signal, 1)
	signal.Notify(done, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-done
		_ = srv.Close()
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// receive checks one callback and prints its outcome and body on stdout.
func receive(w http.ResponseWriter, r *http.Request, key, issuer, audience string, log *slog.Logger) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c, err := verify(r.Header, body, key, issuer, audience)
	if err != nil {
		log.Warn("callback refused", "err", err)
		fmt.Printf("refused: %v\n", err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	log.Info("callback verified", "batch_id", c.BatchID, "bytes", len(body))
	fmt.Printf("verified batch %s (JWT and webhook-signature), %d bytes:\n%s\n", c.BatchID, len(body), body)
	w.WriteHeader(http.StatusNoContent)
}

// verify checks the callback's JWT and Standard Webhooks signature.
func verify(h http.Header, body []byte, key, issuer, audience string) (*claims, error) {
	var c claims
	token, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, errors.New("no Bearer token")
	}
	if _, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return []byte(key), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithIssuer(issuer), jwt.WithAudience(audience),
		jwt.WithIssuedAt(), jwt.WithExpirationRequired()); err != nil {
		return nil, fmt.Errorf("JWT: %w", err)
	}
	sum := sha256.Sum256(body)
	if c.BodySHA256 != hex.EncodeToString(sum[:]) {
		return nil, errors.New("the body's SHA-256 is not the token's body_sha256")
	}
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	if id != c.BatchID {
		return nil, fmt.Errorf("webhook-id %q is not the token's batch %q", id, c.BatchID)
	}
	mac := hmac.New(sha256.New, []byte(key))
	io.WriteString(mac, id+"."+ts+".")
	mac.Write(body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		if hmac.Equal([]byte(sig), []byte(want)) {
			return &c, nil
		}
	}
	return nil, errors.New("webhook-signature does not verify")
}

// selfSigned makes a certificate for 127.0.0.1 and localhost and writes it
// to caOut as PEM.
func selfSigned(caOut string) (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "flatfiler callback receiver"},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:        true, BasicConstraintsValid: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(filepath.Dir(caOut), 0o755); err != nil {
		return tls.Certificate{}, err
	}
	if err := os.WriteFile(caOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}
