package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/flatfiler/flatfiler/intake/harvest"
	"github.com/flatfiler/flatfiler/intake/partner"
)

const partnerUsage = `Usage:
  flatfiler partner add ID [--data DIR] [--domain fi.example.com] [--api-key KEY] [--ssh-key FILE.pub]
                           [--product-name NAME] [--modules FILE.json] [--json]
  flatfiler partner set ID [--data DIR] [--domain ...] [--product-name ...] [--modules FILE.json]
                           [--harvest-url URL] [--harvest-key HEX] [--harvest-schedule "every 6h" | "daily 02:00-04:00"]
                           [--expect-ingest-every 26h]
                           [--harvest-concurrency N] [--harvest-timeout 30s] [--harvest-retries N]`

func partnerCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, partnerUsage)
		return 2
	}
	switch args[0] {
	case "add":
		return partnerAdd(ctx, args[1:], stdout, stderr)
	case "set":
		return partnerSet(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintln(stderr, partnerUsage)
	return 2
}

// productFlags are the partner's PFM product, shown by GET partners/current.
type productFlags struct {
	domain, productName, modules *string
}

func addProductFlags(fs *flag.FlagSet) productFlags {
	return productFlags{
		domain:      fs.String("domain", "", "the partner's PFM domain (the JWT audience of the reporting API)"),
		productName: fs.String("product-name", "", "the partner's PFM product name (GET /api/v2/partners/current)"),
		modules: fs.String("modules", "", `a JSON file of the partner's modules, as GET partners/current shows them: `+
			`{"mobile": {"name": ..., "logout_url": ..., "back_to_online_banking_url": ..., "back_to_online_banking_label": ...}}`),
	}
}

func readModules(path string) (map[string]partner.Module, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var modules map[string]partner.Module
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&modules); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for name, m := range modules {
		if m.Name == "" {
			return nil, fmt.Errorf("%s: module %q has no name", path, name)
		}
	}
	return modules, nil
}

func partnerAdd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("partner add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	product := addProductFlags(fs)
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
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	opts.Domain, opts.ProductName = *product.domain, *product.productName
	opts.APIKey = *apiKey
	if *product.modules != "" {
		if opts.Modules, err = readModules(*product.modules); err != nil {
			fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
			return 1
		}
	}
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

// partnerSet changes what the flags given name; a running server sees it
// at once.
func partnerSet(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("partner set", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "./data", "data directory of the server")
	product := addProductFlags(fs)
	hURL := fs.String("harvest-url", "", "the partner's pull endpoint (the spec's Data Source Setup), http or https")
	hKey := fs.String("harvest-key", "", "the shared key of the endpoint's signatures, 128 hex digits")
	hSchedule := fs.String("harvest-schedule", "", `when every user is harvested: "every 6h", "daily 02:00-04:00" (UTC), or "" for on request only`)
	hConcurrency := fs.Int("harvest-concurrency", 0, "requests to the endpoint at once (default 2)")
	hTimeout := fs.Duration("harvest-timeout", 0, "each request's limit, its answer read whole (default 30s)")
	hRetries := fs.Int("harvest-retries", 0, "further attempts of a request that timed out or met a 5xx or 429 (default 2)")
	expect := fs.Duration("expect-ingest-every", 0, "the longest expected between two files, batches or harvests of the partner applied (e.g. 26h: the FlatfilerPartnerIngestOverdue alert); 0: none")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: flatfiler partner set ID [flags]\n\nChanges the flags given of a partner; the others are kept.")
		fs.PrintDefaults()
	}
	// Only the data directory comes from the environment: a flag given is
	// a change, and a variable left set must not make one.
	if v, ok := os.LookupEnv(envName("data")); ok {
		*data = v
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return 2
	}
	if len(rest) != 1 {
		fs.Usage()
		return 2
	}
	var changes partner.Changes
	var edits []string // the harvest flags given
	given := 0
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "domain":
			changes.Domain = product.domain
		case "product-name":
			changes.ProductName = product.productName
		case "modules":
			changes.Modules, err = readModules(*product.modules)
		case "harvest-url", "harvest-key", "harvest-schedule", "harvest-concurrency", "harvest-timeout", "harvest-retries":
			edits = append(edits, f.Name)
		case "expect-ingest-every":
			changes.ExpectIngestEvery = expect
		default:
			return
		}
		given++
	})
	if edits != nil {
		changes.Harvest = func(c *harvest.Config) {
			for _, name := range edits {
				switch name {
				case "harvest-url":
					c.URL = *hURL
				case "harvest-key":
					c.Key = *hKey
				case "harvest-schedule":
					c.Schedule = *hSchedule
				case "harvest-concurrency":
					c.Concurrency = *hConcurrency
				case "harvest-timeout":
					c.Timeout = harvest.Duration(*hTimeout)
				case "harvest-retries":
					c.Retries = hRetries
				}
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 1
	}
	if given == 0 {
		fmt.Fprintln(stderr, "flatfiler partner set: nothing to change: give --domain, --product-name, --modules, --harvest-... or --expect-ingest-every")
		return 2
	}
	reg, err := partner.Open(filepath.Join(*data, "partners"))
	if err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 1
	}
	if err := reg.Set(rest[0], changes); err != nil {
		fmt.Fprintf(stderr, "flatfiler partner: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "partner %s changed\n", rest[0])
	return 0
}
