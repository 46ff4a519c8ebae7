package sftpd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"

	"github.com/flatfiler/flatfiler/intake/inbox"
)

// handlers serve one session's SFTP requests inside the partner's box.
// The box is flat: "/" and the files in it, nothing else.
type handlers struct {
	box    *inbox.Box
	ss     *session
	server *Server
}

// errNoDirs answers requests for directories other than "/".
var errNoDirs = errors.New("only files in the top directory: subdirectories are not supported")

// fileName maps a request path to a name in the box. pkg/sftp has already
// made it absolute and clean ("/a/../b" is "/b"); anything that still has
// a directory in it is refused, and the box checks the name itself.
func fileName(path string) (string, error) {
	name, ok := strings.CutPrefix(path, "/")
	if !ok || strings.Contains(name, "/") {
		return "", errNoDirs
	}
	if !inbox.ValidName(name) {
		return "", inbox.ErrBadName
	}
	return name, nil
}

// status turns the box's errors into what SFTP clients show: a status
// code and a message saying why, without the server's paths. pkg/sftp
// sends an error's text as the status message and takes the code from a
// wrapped sftp.ErrSSHFx*. OpenSSH's sftp prints only the code's text
// ("Failure", "Permission denied": sftp-client.c, get_handle, in 9.2);
// WinSCP, FileZilla, lftp, Paramiko and pkg/sftp show the message.
func status(err error) error {
	var pe *os.PathError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, os.ErrNotExist):
		return sftp.ErrSSHFxNoSuchFile
	case errors.Is(err, inbox.ErrNotFile), errors.Is(err, os.ErrPermission):
		return sftp.ErrSSHFxPermissionDenied
	case errors.Is(err, inbox.ErrBadName), errors.Is(err, errNoDirs):
		return fmt.Errorf("%v: %w", err, sftp.ErrSSHFxPermissionDenied)
	case errors.Is(err, inbox.ErrTooLarge), errors.Is(err, inbox.ErrQuota):
		return fmt.Errorf("%v: the upload was discarded: %w", err, sftp.ErrSSHFxFailure)
	case errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("the server's disk is full: the upload was discarded; try again later: %w", sftp.ErrSSHFxFailure)
	case errors.As(err, &pe):
		return fmt.Errorf("the server could not %s the file: %v: %w", pe.Op, pe.Err, sftp.ErrSSHFxFailure)
	}
	return err
}

func (h *handlers) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	h.ss.touch()
	name, err := fileName(r.Filepath)
	if err != nil {
		return nil, status(err)
	}
	f, err := h.box.Open(name)
	if err != nil {
		return nil, status(err)
	}
	return &download{f: f, ss: h.ss, metrics: h.server.metrics}, nil
}

func (h *handlers) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	h.ss.touch()
	name, err := fileName(r.Filepath)
	if err != nil {
		h.server.metrics.Uploads.WithLabelValues("refused").Inc()
		return nil, status(err)
	}
	u, err := h.box.Create(name)
	if err != nil {
		h.server.metrics.Uploads.WithLabelValues("refused").Inc()
		return nil, status(err)
	}
	return &upload{Upload: u, h: h, started: time.Now()}, nil
}

func (h *handlers) Filecmd(r *sftp.Request) error {
	h.ss.touch()
	switch r.Method {
	case "Setstat":
		// Times and modes (sftp put -p) are accepted and ignored: the box
		// owns its files' modes. A size change would bypass atomic
		// publishing, so it is refused.
		if _, err := fileName(r.Filepath); err != nil && r.Filepath != "/" {
			return status(err)
		}
		if r.AttrFlags().Size {
			return sftp.ErrSSHFxOpUnsupported
		}
		return nil
	case "Rename", "PosixRename":
		return h.rename(r)
	case "Remove":
		name, err := fileName(r.Filepath)
		if err != nil {
			return status(err)
		}
		return status(h.box.Remove(name))
	case "Mkdir", "Rmdir":
		return errNoDirs
	case "Symlink", "Link":
		return errors.New("links are not allowed")
	}
	return sftp.ErrSSHFxOpUnsupported
}

// PosixRename replaces the target, as clients that upload name.filepart and
// rename it expect; plain Rename does the same, which is what those
// clients need when they fall back to it.
func (h *handlers) PosixRename(r *sftp.Request) error { return h.Filecmd(r) }

func (h *handlers) rename(r *sftp.Request) error {
	from, err := fileName(r.Filepath)
	if err != nil {
		return status(err)
	}
	to, err := fileName(r.Target)
	if err != nil {
		return status(err)
	}
	return status(h.box.Rename(from, to))
}

func (h *handlers) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	h.ss.touch()
	switch r.Method {
	case "List":
		if r.Filepath != "/" {
			return nil, errNoDirs
		}
		files, err := h.box.List()
		if err != nil {
			return nil, status(err)
		}
		return listing(files), nil
	case "Stat", "Lstat":
		if r.Filepath == "/" {
			info, err := h.box.DirInfo()
			if err != nil {
				return nil, status(err)
			}
			return listing{info}, nil
		}
		name, err := fileName(r.Filepath)
		if err != nil {
			if errors.Is(err, errNoDirs) {
				return nil, sftp.ErrSSHFxNoSuchFile
			}
			return nil, status(err)
		}
		info, err := h.box.Stat(name)
		if err != nil {
			return nil, status(err)
		}
		return listing{info}, nil
	case "Readlink":
		return nil, errors.New("links are not allowed")
	}
	return nil, sftp.ErrSSHFxOpUnsupported
}

// StatVFS answers statvfs@openssh.com, which OpenSSH's sftp asks for
// "df": the partner's quota and what is left of it, so a partner whose
// client shows only "Failure" can see why an upload was refused.
func (h *handlers) StatVFS(r *sftp.Request) (*sftp.StatVFS, error) {
	h.ss.touch()
	capacity, free, err := h.box.Space()
	if err != nil {
		return nil, status(err)
	}
	// Counted in bytes (a fragment of 1), so a small quota is not rounded
	// to nothing.
	return &sftp.StatVFS{
		Bsize: 4096, Frsize: 1, Blocks: uint64(capacity),
		Bfree: uint64(free), Bavail: uint64(free), Namemax: 255,
	}, nil
}

func (h *handlers) Lstat(r *sftp.Request) (sftp.ListerAt, error) { return h.Filelist(r) }

type listing []os.FileInfo

func (l listing) ListAt(dst []os.FileInfo, off int64) (int, error) {
	if off >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[off:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}

// upload is an inbox upload that counts as session activity and is logged
// when it ends.
type upload struct {
	*inbox.Upload
	h       *handlers
	started time.Time
	refused atomic.Bool // a write failed: limits, quota or I/O
}

func (u *upload) WriteAt(p []byte, off int64) (int, error) {
	u.h.ss.touch()
	n, err := u.Upload.WriteAt(p, off)
	u.h.ss.received.Add(int64(n))
	u.h.server.metrics.BytesReceived.Add(float64(n))
	if err != nil {
		// A file with a failed write is incomplete whatever the client
		// does next: it must not be published when the handle closes.
		if !u.refused.Swap(true) {
			u.h.server.log.Warn("sftp upload refused", "partner", u.h.box.Partner(), "file", u.Name(), "offset", off, "err", err)
		}
		u.Upload.TransferError(err)
	}
	return n, status(err)
}

func (u *upload) Close() error {
	err := u.Upload.Close()
	log, m := u.h.server.log, u.h.server.metrics
	seconds := time.Since(u.started).Seconds()
	if err != nil {
		outcome := "refused"
		if errors.Is(err, inbox.ErrAborted) && !u.refused.Load() {
			outcome = "aborted"
		}
		m.Uploads.WithLabelValues(outcome).Inc()
		log.Warn("sftp upload not published", "partner", u.h.box.Partner(), "file", u.Name(), "outcome", outcome, "seconds", seconds, "err", err)
		return status(err)
	}
	u.h.ss.uploads.Add(1)
	m.Uploads.WithLabelValues("published").Inc()
	info, _ := u.h.box.Stat(u.Name())
	size := int64(-1)
	if info != nil {
		size = info.Size()
	}
	log.Info("sftp upload published", "partner", u.h.box.Partner(), "file", u.Name(), "bytes", size, "seconds", seconds)
	return nil
}

// download reads a published file for the session.
type download struct {
	f       *os.File
	ss      *session
	metrics *Metrics
}

func (d *download) ReadAt(p []byte, off int64) (int, error) {
	d.ss.touch()
	n, err := d.f.ReadAt(p, off)
	d.ss.sent.Add(int64(n))
	d.metrics.BytesSent.Add(float64(n))
	return n, err
}

func (d *download) Close() error { return d.f.Close() }
