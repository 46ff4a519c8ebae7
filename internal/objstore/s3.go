// Package objstore keeps files in S3-compatible object storage (AWS S3,
// MinIO, Ceph, R2...) through minio-go: processed files leave the server's
// disk for a bucket, where they cost a fraction and no node has to hold
// them.
package objstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Store is a bucket and a key prefix in it.
type Store struct {
	client *minio.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string // for messages, without secrets
	// plain: http, where minio-go would sign each chunk of a part (a
	// framing some S3-compatible stores do not decode): parts go with an
	// MD5 each instead.
	plain bool
}

// Open reads a location of the form
//
//	s3://BUCKET/PREFIX?endpoint=HOST:PORT&region=R&ca=FILE&insecure=true
//
// endpoint defaults to AWS's (s3.amazonaws.com); ca is a PEM file of CAs
// trusted besides the system's, for a store with a private CA; insecure
// uses plain http, for a store on loopback. Credentials come from the
// environment as AWS tools read them (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), never from the URL, which
// appears in logs.
func Open(ctx context.Context, location string) (*Store, error) {
	u, err := url.Parse(location)
	if err != nil {
		return nil, fmt.Errorf("object store %q: %w", location, err)
	}
	if u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("object store %q: want s3://BUCKET/PREFIX", location)
	}
	if u.User != nil {
		return nil, fmt.Errorf("object store %q: credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not the URL", u.Redacted())
	}
	q := u.Query()
	endpoint := q.Get("endpoint")
	if endpoint == "" {
		endpoint = "s3.amazonaws.com"
	}
	insecure, _ := strconv.ParseBool(q.Get("insecure"))
	transport, err := minio.DefaultTransport(!insecure)
	if err != nil {
		return nil, err
	}
	if ca := q.Get("ca"); ca != "" && insecure {
		return nil, fmt.Errorf("object store %s: ca is for TLS, and insecure=true is plain http: give one or the other", location)
	} else if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("object store %s: ca: %w", location, err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("object store %s: ca: %s holds no PEM certificate", location, ca)
		}
		transport.TLSClientConfig.RootCAs = pool
	}
	client, err := minio.New(endpoint, &minio.Options{
		Creds:     credentials.NewEnvAWS(),
		Secure:    !insecure,
		Region:    q.Get("region"),
		Transport: transport,
		// A store that is down costs a job's worker little: what is not
		// stored now is tried again at the next offload.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", location, err)
	}
	s := &Store{client: client, bucket: u.Host, prefix: strings.Trim(u.Path, "/"), url: location, plain: insecure}
	if s.prefix != "" {
		s.prefix += "/"
	}
	// A missing bucket or refused credentials show now, not at the first
	// file, hours later.
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ok, err := client.BucketExists(ctx, s.bucket)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", location, err)
	}
	if !ok {
		return nil, fmt.Errorf("object store %s: no bucket %q", location, s.bucket)
	}
	return s, nil
}

func (s *Store) String() string { return s.url }

// partSize is what a multipart upload sends per part: an upload's memory
// is a few parts, whatever the file's size.
const partSize = 16 << 20

// Put uploads the file at localPath under key, whole or not at all (a
// multipart upload that fails leaves no object).
func (s *Store) Put(ctx context.Context, key, localPath string) error {
	_, err := s.client.FPutObject(ctx, s.bucket, s.prefix+key, localPath, minio.PutObjectOptions{
		ContentType: "application/octet-stream", PartSize: partSize, NumThreads: 2,
		DisableContentSha256: s.plain, SendContentMd5: s.plain,
	})
	if err != nil {
		return fmt.Errorf("object store %s: put %s: %w", s.url, key, err)
	}
	return nil
}

// Expire removes the objects under the prefix last written before cutoff,
// and returns how many.
func (s *Store) Expire(ctx context.Context, cutoff time.Time) (int, error) {
	removed := 0
	var errs []error
	for obj := range s.client.ListObjectsIter(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix, Recursive: true}) {
		if obj.Err != nil {
			return removed, fmt.Errorf("object store %s: list: %w", s.url, obj.Err)
		}
		if !obj.LastModified.Before(cutoff) {
			continue
		}
		if err := s.client.RemoveObject(ctx, s.bucket, obj.Key, minio.RemoveObjectOptions{}); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("object store %s: expire: %w", s.url, err)
	}
	return removed, nil
}

// Size is the stored object's length, and whether it is there.
func (s *Store) Size(ctx context.Context, key string) (int64, bool, error) {
	info, err := s.client.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("object store %s: stat %s: %w", s.url, key, err)
	}
	return info.Size, true, nil
}
