package sftpd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Ban is an (address, user name) refused for repeated failed logins. User
// is empty for the names that are no partner's: an address trying many
// such names is a scanner, and that bans the scanning, not the partners.
//
// Bans are per address and user name, not per address as SFTPGo's defender
// scores hosts: partners often share an address (a bank's NAT, a hosted
// transfer service), and one partner's bad password, or an attacker's
// guesses at one name, must not lock out the others. A guesser still gets
// BanAfter tries per name per window, slowed by the failure delay.
type Ban struct {
	Address  string    `json:"address"`
	User     string    `json:"user,omitempty"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	Failures int       `json:"failures"`
}

type banKey struct{ addr, user string }

// banList counts failed logins and holds the bans they earn. The bans are
// kept in a file (path, when set): a restart does not lift them, and
// `flatfiler ban` lists and lifts them while the server runs, the server
// reading the file again when it changes. Both sides change it under a
// lock on path+".lock", so neither loses the other's change.
type banList struct {
	path        string
	after       int
	window, ban time.Duration

	mu       sync.Mutex
	failures map[banKey][]time.Time
	bans     map[banKey]Ban
	loadedAt time.Time // the file's mtime when last read
}

func newBanList(path string, after int, window, ban time.Duration) (*banList, error) {
	b := &banList{path: path, after: after, window: window, ban: ban, failures: map[banKey][]time.Time{}, bans: map[banKey]Ban{}}
	if path != "" {
		if err := b.refresh(true); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func key(addr, user string, known bool) banKey {
	if !known {
		user = ""
	}
	return banKey{addr, user}
}

// refresh re-reads the file if it changed. Called with mu held.
func (b *banList) refresh(force bool) error {
	if b.path == "" {
		return nil
	}
	st, err := os.Stat(b.path)
	if errors.Is(err, os.ErrNotExist) {
		b.bans, b.loadedAt = map[banKey]Ban{}, time.Time{}
		return nil
	}
	if err != nil {
		return fmt.Errorf("sftp bans: %w", err)
	}
	if !force && st.ModTime().Equal(b.loadedAt) {
		return nil
	}
	list, err := readBans(b.path)
	if err != nil {
		return err
	}
	bans := map[banKey]Ban{}
	for _, ban := range list {
		bans[banKey{ban.Address, ban.User}] = ban
	}
	b.bans, b.loadedAt = bans, st.ModTime()
	return nil
}

// banned reports whether addr may not log in as user now.
func (b *banList) banned(addr, user string, known bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.refresh(false) // an unreadable file keeps the bans known
	ban, ok := b.bans[key(addr, user, known)]
	return ok && time.Now().Before(ban.Until)
}

// fail records a failure and returns the recent count and, if this
// failure earned one, the ban.
func (b *banList) fail(addr, user string, known bool) (int, *Ban, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := key(addr, user, known)
	now := time.Now()
	recent := b.failures[k][:0]
	for _, t := range b.failures[k] {
		if now.Sub(t) < b.window {
			recent = append(recent, t)
		}
	}
	recent = append(recent, now)
	b.failures[k] = recent
	// Many addresses failing once each must not grow the table for ever.
	if len(b.failures) > 10_000 {
		for other, times := range b.failures {
			if now.Sub(times[len(times)-1]) >= b.window {
				delete(b.failures, other)
			}
		}
	}
	if len(recent) < b.after {
		return len(recent), nil, nil
	}
	delete(b.failures, k)
	ban := Ban{Address: k.addr, User: k.user, Since: now.UTC(), Until: now.Add(b.ban).UTC(), Failures: len(recent)}
	b.bans[k] = ban
	err := b.save(func(list []Ban) []Ban { return append(withoutBan(list, k.addr, k.user), ban) })
	return len(recent), &ban, err
}

// save changes the file under its lock. Called with mu held.
func (b *banList) save(change func([]Ban) []Ban) error {
	if b.path == "" {
		return nil
	}
	if err := updateBans(b.path, change); err != nil {
		return err
	}
	return b.refresh(true)
}

func withoutBan(list []Ban, addr, user string) []Ban {
	return slices.DeleteFunc(list, func(x Ban) bool { return x.Address == addr && x.User == user })
}

func readBans(path string) ([]Ban, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sftp bans: %w", err)
	}
	var list []Ban
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("sftp bans: %s: %w", path, err)
	}
	return list, nil
}

// updateBans applies change to the file's bans, dropping those expired,
// under the file's lock, and writes it atomically.
func updateBans(path string, change func([]Ban) []Ban) error {
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("sftp bans: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("sftp bans: lock: %w", err)
	}
	list, err := readBans(path)
	if err != nil {
		return err
	}
	now := time.Now()
	list = slices.DeleteFunc(change(list), func(x Ban) bool { return !now.Before(x.Until) })
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("sftp bans: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("sftp bans: %w", err)
	}
	return nil
}

// ListBans returns the bans in force kept at path (a server's BanFile),
// oldest first.
func ListBans(path string) ([]Ban, error) {
	list, err := readBans(path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	list = slices.DeleteFunc(list, func(x Ban) bool { return !now.Before(x.Until) })
	slices.SortFunc(list, func(a, b Ban) int { return a.Since.Compare(b.Since) })
	return list, nil
}

// RemoveBans lifts the bans of addr (of user only, if given) kept at path;
// a running server sees it at its next login attempt. It returns how many
// were lifted.
func RemoveBans(path, addr, user string) (int, error) {
	lifted := 0
	err := updateBans(path, func(list []Ban) []Ban {
		return slices.DeleteFunc(list, func(x Ban) bool {
			match := x.Address == addr && (user == "" || x.User == user)
			if match {
				lifted++
			}
			return match
		})
	})
	return lifted, err
}

// BanFile is where a server whose data lives in dir keeps its SFTP bans.
func BanFile(dir string) string { return filepath.Join(dir, "sftp_bans.json") }
