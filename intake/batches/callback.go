package batches

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/sourcegraph/conc"

	"github.com/flatfiler/flatfiler/intake/jobs"
	"github.com/flatfiler/flatfiler/internal/failpoint"
)

// CallbackClaims are the claims of a callback's JWT (HS256, signed with
// the partner's API key): the registered ones, and what binds the token to
// one batch and one body.
type CallbackClaims struct {
	jwt.RegisteredClaims
	BatchID    string `json:"batch_id"`
	BodySHA256 string `json:"body_sha256"`
}

// callbackLifetime is a callback JWT's exp after its iat: well inside the
// spec's 24 hours, long enough for a slow receiver.
const callbackLifetime = 5 * time.Minute

// public reports whether ip is an address on the internet, not loopback,
// private, link-local or unspecified.
func public(ip net.IP) bool {
	return !(ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast())
}

// addressCheck refuses, at every connection, the private addresses a
// callback's name resolves to: a check of the URL alone would let a name
// that resolves to 127.0.0.1 through.
func addressCheck(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip != nil && !allowPrivate && !public(ip) {
			return fmt.Errorf("callback address %s is private or loopback (serve --callback-allow-private allows it)", host)
		}
		return nil
	}
}

// Run builds the contents of finished batches and delivers their
// callbacks until ctx ends.
func (s *Service) Run(ctx context.Context) {
	var wg conc.WaitGroup
	defer wg.Wait()
	for {
		next := time.Hour
		now := time.Now()
		for _, j := range s.cfg.Jobs.Batches() {
			if j.Batch.Content == nil {
				if err := s.buildContent(ctx, j); err != nil {
					s.log.Error("batch content not built; trying again", "partner", j.Partner, "batch_id", j.ID, "err", err)
					next = min(next, 5*time.Second)
				} else {
					next = 0 // its first attempt is due now
				}
				continue
			}
			d := j.Batch.Delivery
			if wait := d.NextAttemptAt.Sub(now); wait > 0 {
				next = min(next, wait)
				continue
			}
			s.mu.Lock()
			busy := s.inflight[j.ID]
			s.inflight[j.ID] = true
			s.mu.Unlock()
			if !busy {
				wg.Go(func() {
					s.deliver(ctx, j)
					s.mu.Lock()
					delete(s.inflight, j.ID)
					s.mu.Unlock()
					s.signal()
				})
			}
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// deliver makes one attempt at a batch's callback and records its outcome.
func (s *Service) deliver(ctx context.Context, j jobs.Job) {
	started := time.Now()
	code, retryAfter, err := s.post(ctx, j)
	if ctx.Err() != nil {
		return // shutting down: the attempt is made again at the next start
	}
	_ = s.cfg.Faults.Hit(failpoint.CallbackAnswered)
	now := time.Now().UTC()
	outcome := "retry"
	var nextAt *time.Time
	var lastErr string
	attempts := j.Batch.Delivery.Attempts + 1
	switch {
	case err == nil && code >= 200 && code < 300:
		outcome = "delivered"
	case err == nil && code == http.StatusGone:
		outcome, lastErr = "gone", "the receiver answered 410 Gone: no more attempts"
	default:
		if err != nil {
			lastErr = err.Error()
		} else {
			lastErr = fmt.Sprintf("the receiver answered %d", code)
		}
		if attempts > len(s.cfg.Schedule) {
			outcome = "failed"
			lastErr += fmt.Sprintf("; given up after %d attempts", attempts)
			break
		}
		wait := s.cfg.Schedule[attempts-1]
		if retryAfter > wait {
			wait = min(retryAfter, 24*time.Hour)
		}
		at := now.Add(wait)
		nextAt = &at
	}
	s.cfg.Metrics.Attempts.WithLabelValues(outcome).Inc()
	log := s.log.With("partner", j.Partner, "batch_id", j.ID, "attempt", attempts, "status", code, "seconds", time.Since(started).Seconds())
	if outcome == "delivered" {
		log.Info("batch callback delivered")
	} else {
		log.Warn("batch callback not delivered", "outcome", outcome, "err", lastErr, "next_attempt_at", nextAt)
	}
	err = s.cfg.Jobs.UpdateBatch(j.ID, func(b *jobs.BatchInfo) {
		d := b.Delivery
		d.Attempts, d.LastError, d.NextAttemptAt = attempts, lastErr, nextAt
		switch outcome {
		case "delivered":
			d.State, d.DeliveredAt = jobs.DeliveryDelivered, &now
		case "gone", "failed":
			d.State = jobs.DeliveryFailed
		}
	})
	if err != nil {
		log.Error("callback outcome not recorded; it will be attempted again", "err", err)
	}
}

// post sends the content once: the JWT and the Standard Webhooks headers.
func (s *Service) post(ctx context.Context, j jobs.Job) (code int, retryAfter time.Duration, err error) {
	p, ok := s.cfg.Partners.Get(j.Partner)
	if !ok || p.APIKey == "" {
		return 0, 0, fmt.Errorf("partner %s has no stored API key to sign the callback with; re-import its key", j.Partner)
	}
	path := j.Batch.Content.Path
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	now := time.Now()
	ts := strconv.FormatInt(now.Unix(), 10)
	// Standard Webhooks: HMAC-SHA256 of "id.timestamp.body", keyed by the
	// secret's bytes: here the partner's API key (whsec_ + its base64).
	mac := hmac.New(sha256.New, []byte(p.APIKey))
	io.WriteString(mac, j.ID+"."+ts+".")
	if _, err := io.Copy(mac, f); err != nil {
		return 0, 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, 0, err
	}
	aud := p.Domain
	if aud == "" {
		aud = p.ID
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, CallbackClaims{
		RegisteredClaims: jwt.RegisteredClaims{Issuer: s.cfg.Issuer, Subject: j.ID, Audience: jwt.ClaimStrings{aud},
			IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(callbackLifetime)), ID: uuid.NewString()},
		BatchID: j.ID, BodySHA256: j.Batch.Content.SHA256,
	}).SignedString([]byte(p.APIKey))
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, j.Batch.Callback, f)
	if err != nil {
		return 0, 0, err
	}
	req.ContentLength = j.Batch.Content.Bytes
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flatfiler")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("webhook-id", j.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if v := resp.Header.Get("Retry-After"); v != "" {
		if secs, err := strconv.Atoi(v); err == nil {
			retryAfter = time.Duration(secs) * time.Second
		} else if at, err := http.ParseTime(v); err == nil {
			retryAfter = time.Until(at)
		}
	}
	return resp.StatusCode, retryAfter, nil
}
