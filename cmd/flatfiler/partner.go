package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/flatfiler/flatfiler/intake/partner"
)

func partnerCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, "Usage: flatfiler partner add ID [--data DIR] [--domain fi.example.com] [--api-key KEY] [--ssh-key FILE.pub] [--json]")
		return 2
	}
	fs := flag.NewFlagSet("partner add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	domain := fs.String("domain", "", "the partner's PFM domain (the JWT audience of the reporting API)")
	sshKey := fs.String("ssh-key", "", "an SSH public key file (authorized_keys format) for SFTP logins without a password")
	apiKey := fs.String("api-key", "", "import this API key instead of generating one (at least 16 printable characters; it also signs the partner's JWTs)")
	asJSON := fs.Bool("json", false, `print {"partner_id","api_key","sftp_user","sftp_password"}`)
	var opts partner.NewOptions
	fs.Var(sizeFlag{&opts.MaxFileSize}, "max-file-size", "largest file this partner may upload (default: the server's)")
	fs.Var(sizeFlag{&opts.QuotaBytes}, "quota", "bytes this partner's SFTP folder may hold (default: the server's)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler partner add ID [flags]\n\nCreates a partner and prints its API key and SFTP password, once.")
		fs.PrintDefaults()
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 2
	}
	rest, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	opts.Domain = *domain
	opts.APIKey = *apiKey
	if *sshKey != "" {
		keys, err := os.ReadFile(*sshKey)
		if err != nil {
			fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
			return 1
		}
		for _, line := range strings.Split(string(keys), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				opts.AuthorizedKeys = append(opts.AuthorizedKeys, line)
			}
		}
	}
	reg, err := partner.Open(filepath.Join(*data, "partners"))
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 1
	}
	creds, err := reg.Add(rest[0], opts)
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 1
	}
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(creds)
		return 0
	}
	fmt.Fprintf(stdout, "partner %s created. Its secrets are shown this once:\n", creds.PartnerID)
	fmt.Fprintf(stdout, "  API key        %s\n  SFTP user      %s\n  SFTP password  %s\n", creds.APIKey, creds.SFTPUser, creds.SFTPPassword)
	if len(opts.AuthorizedKeys) > 0 {
		fmt.Fprintf(stdout, "  SSH keys       %d authorized\n", len(opts.AuthorizedKeys))
	}
	return 0
}
