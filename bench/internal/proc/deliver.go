package proc

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Server is a flatfiler serve the benchmark started (or the nodes of a
// cluster a file is uploaded to and notified through), and a partner's
// secrets: the demo partner's unless User says another.
type Server struct {
	HTTPAddr, SFTPAddr   string
	User                 string // SFTP user; default demo
	APIKey, SFTPPassword string
	PollEvery            time.Duration // default 100 ms
}

// Delivered is a flat file's job once it ended.
type Delivered struct {
	Status  string
	Records int64 // users, accounts and transactions, and skipped ones
	// Seconds from the upload's start to the job's end seen.
	Seconds float64
}

// Deliver sends a flat file as a partner does: its MD5 first (the partner
// has it before the upload), then the SFTP upload, the notification, and
// polling the job to its end.
func Deliver(ctx context.Context, s Server, path string) (Delivered, error) {
	var d Delivered
	sum, err := md5File(path)
	if err != nil {
		return d, err
	}
	user := s.User
	if user == "" {
		user = "demo"
	}
	conn, err := ssh.Dial("tcp", s.SFTPAddr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(s.SFTPPassword)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), // loopback, a server this run started
	})
	if err != nil {
		return d, fmt.Errorf("ssh: %w", err)
	}
	defer conn.Close()
	client, err := sftp.NewClient(conn, sftp.UseConcurrentWrites(true))
	if err != nil {
		return d, err
	}
	defer client.Close()
	name := fmt.Sprintf("%d-%s", time.Now().UnixNano(), filepath.Base(path))
	start := time.Now()
	if err := upload(client, path, name); err != nil {
		return d, err
	}
	q := url.Values{"api_key": {s.APIKey}, "filenames": {name}, "hashes": {sum}}
	res, err := http.Post("http://"+s.HTTPAddr+"/api/v2/uploads/received?"+q.Encode(), "", nil)
	if err != nil {
		return d, err
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return d, fmt.Errorf("notification: %d %s", res.StatusCode, body)
	}
	var accepted struct {
		Jobs []struct {
			ID string `json:"job_id"`
		} `json:"uploads"`
	}
	if err := json.Unmarshal(body, &accepted); err != nil || len(accepted.Jobs) != 1 {
		return d, fmt.Errorf("notification answer: %s", body)
	}
	every := s.PollEvery
	if every <= 0 {
		every = 100 * time.Millisecond
	}
	for {
		select {
		case <-ctx.Done():
			return d, ctx.Err()
		case <-time.After(every):
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.HTTPAddr+"/api/v2/uploads/"+accepted.Jobs[0].ID, nil)
		req.SetBasicAuth(s.APIKey, "")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return d, err
		}
		var job struct {
			Upload struct {
				Status  string `json:"status"`
				Message string `json:"message"`
				Totals  map[string]struct {
					Total int64 `json:"total"`
				} `json:"totals"`
				Skipped int64 `json:"skipped"`
			} `json:"upload"`
		}
		err = json.NewDecoder(res.Body).Decode(&job)
		res.Body.Close()
		if err != nil {
			return d, err
		}
		switch d.Status = job.Upload.Status; d.Status {
		case "success", "partial-success":
			for _, t := range job.Upload.Totals {
				d.Records += t.Total
			}
			d.Records += job.Upload.Skipped
			d.Seconds = time.Since(start).Seconds()
			return d, nil
		case "error":
			return d, fmt.Errorf("job of %s failed: %s", path, job.Upload.Message)
		}
	}
}

func upload(client *sftp.Client, path, name string) error {
	src, err := os.Open(path)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := client.Create(name)
	if err != nil {
		return err
	}
	if _, err := dst.ReadFrom(src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

func md5File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopyFile copies the file at from to to, replacing it.
func CopyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}
