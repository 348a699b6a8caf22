package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
)

// The token authentication webhook: kube-apiserver sends it every bearer token it cannot
// verify itself (anything but a service-account token) as an authentication.k8s.io/v1
// TokenReview, and it answers from DIR/tokens, a file "govcluster token" appends to. That
// is how real identity providers plug into Kubernetes, and it lets tests mint bearer
// tokens for any user and groups (service-account tokens cannot carry custom groups).
//
// DIR/tokens holds one token a line, fields separated by tabs:
//
//	TOKEN <TAB> USER <TAB> GROUP,GROUP,... <TAB> EXPIRY (unix seconds; 0 = never)
//
// Blank lines and lines starting with '#' are ignored.

const (
	authnPort = 16444
	// tokenPrefix makes minted tokens recognisable (in a leaked log, a secret scanner...).
	tokenPrefix = "gbt_"
	// authnCacheTTL is how long kube-apiserver caches a webhook answer: short, so that
	// tests are not fooled by a cached verdict.
	authnCacheTTL = "5s"
)

func tokensPath(stateDir string) string { return filepath.Join(stateDir, "tokens") }
func authnKubeconfigPath(stateDir string) string {
	return filepath.Join(stateDir, "authn-webhook.kubeconfig")
}

// prepareAuthn gives the webhook a serving certificate from the cluster CA (once) and
// writes the kubeconfig that tells kube-apiserver where the webhook is and which CA
// signed it.
func prepareAuthn(stateDir string, p *pki) error {
	if err := p.ensureServing("authn", "govcluster-authn", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return fmt.Errorf("authn webhook certificate: %w", err)
	}
	content := fmt.Sprintf(`# Written by govcluster up: kube-apiserver's --authentication-token-webhook-config-file.
apiVersion: v1
kind: Config
clusters:
- name: govcluster-authn
  cluster:
    server: https://127.0.0.1:%d/authenticate
    certificate-authority: %s
users:
- name: kube-apiserver
  user: {}
contexts:
- name: webhook
  context:
    cluster: govcluster-authn
    user: kube-apiserver
current-context: webhook
`, authnPort, p.path("ca.crt"))
	out := authnKubeconfigPath(stateDir)
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

// runAuthn serves the TokenReview webhook on 127.0.0.1 over HTTPS until SIGTERM.
func runAuthn(args []string) error {
	fs := flag.NewFlagSet("authn", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up' (tokens file and PKI)")
	port := fs.Int("port", authnPort, "loopback port to serve on")
	_ = fs.Parse(args)
	if *stateDir == "" {
		return errors.New("--state-dir is required")
	}
	p, err := loadOrCreatePKI(filepath.Join(*stateDir, "pki"))
	if err != nil {
		return err
	}
	if err := prepareAuthn(*stateDir, p); err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(p.path("authn.crt"), p.path("authn.key"))
	if err != nil {
		return err
	}
	store := &tokenStore{path: tokensPath(*stateDir)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("POST /authenticate", store.serveTokenReview)
	srv := &http.Server{
		Addr:              fmt.Sprintf("127.0.0.1:%d", *port),
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(quietProbes{os.Stderr}, "", log.LstdFlags),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	l, err := net.Listen("tcp", srv.Addr)
	if err != nil {
		return err
	}
	fmt.Printf("authn webhook serving TokenReviews on https://%s/authenticate from %s\n", srv.Addr, store.path)

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(l, "", "") }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		fmt.Println("authn webhook stopping")
		shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelShutdown()
		return srv.Shutdown(shutdown)
	}
}

// quietProbes drops the handshake errors of connections closed without a word: "up"
// waiting for the port to listen.
type quietProbes struct{ w io.Writer }

func (q quietProbes) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("TLS handshake error")) && bytes.HasSuffix(bytes.TrimSpace(b), []byte(": EOF")) {
		return len(b), nil
	}
	return q.w.Write(b)
}

type tokenEntry struct {
	user   string
	groups []string
	expiry int64 // unix seconds; 0: never
}

// tokenStore is DIR/tokens, parsed again whenever its size or modification time changes,
// so that tokens minted while the cluster runs work at once.
type tokenStore struct {
	path string

	mu      sync.Mutex
	size    int64
	modTime time.Time
	loaded  bool
	tokens  map[string]tokenEntry
}

func (s *tokenStore) lookup(token string) (tokenEntry, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	info, err := os.Stat(s.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		s.tokens, s.loaded = nil, false
	case err != nil:
		return tokenEntry{}, false, err
	case !s.loaded || info.Size() != s.size || !info.ModTime().Equal(s.modTime):
		data, err := os.ReadFile(s.path)
		if err != nil {
			return tokenEntry{}, false, err
		}
		tokens, complete := parseTokens(data)
		// A line caught half-written is skipped, and the file read again next time.
		s.tokens, s.size, s.modTime, s.loaded = tokens, info.Size(), info.ModTime(), complete == len(data)
	}
	e, ok := s.tokens[token]
	return e, ok, nil
}

// parseTokens reads the complete (newline-terminated) lines of a tokens file, returning the
// tokens and how many bytes it read. Malformed lines are ignored.
func parseTokens(data []byte) (map[string]tokenEntry, int) {
	tokens := map[string]tokenEntry{}
	complete := bytes.LastIndexByte(data, '\n') + 1
	sc := bufio.NewScanner(bytes.NewReader(data[:complete]))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 || f[0] == "" || f[1] == "" {
			continue
		}
		expiry, err := strconv.ParseInt(strings.TrimSpace(f[3]), 10, 64)
		if err != nil {
			continue
		}
		var groups []string
		for g := range strings.SplitSeq(f[2], ",") {
			if g = strings.TrimSpace(g); g != "" {
				groups = append(groups, g)
			}
		}
		tokens[f[0]] = tokenEntry{user: f[1], groups: groups, expiry: expiry}
	}
	return tokens, complete
}

// serveTokenReview answers one TokenReview. It never logs a token.
func (s *tokenStore) serveTokenReview(w http.ResponseWriter, r *http.Request) {
	var review authnv1.TokenReview
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&review); err != nil {
		http.Error(w, "a TokenReview (authentication.k8s.io/v1) was expected: "+err.Error(), http.StatusBadRequest)
		return
	}
	status := s.review(review.Spec.Token, time.Now())
	if status.Authenticated {
		// These tokens are valid for whatever audience is asked for.
		status.Audiences = review.Spec.Audiences
		fmt.Printf("%s authenticated %q groups %v\n", time.Now().Format(time.RFC3339), status.User.Username, status.User.Groups)
	} else {
		fmt.Printf("%s refused a token: %s\n", time.Now().Format(time.RFC3339), status.Error)
	}
	resp := authnv1.TokenReview{Status: status}
	resp.APIVersion = authnv1.SchemeGroupVersion.String()
	resp.Kind = "TokenReview"
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&resp)
}

func (s *tokenStore) review(token string, now time.Time) authnv1.TokenReviewStatus {
	if token == "" {
		return authnv1.TokenReviewStatus{Error: "no token"}
	}
	e, ok, err := s.lookup(token)
	if err != nil {
		return authnv1.TokenReviewStatus{Error: "reading the tokens file: " + err.Error()}
	}
	if !ok {
		return authnv1.TokenReviewStatus{Error: "unknown token"}
	}
	if e.expiry != 0 && now.Unix() >= e.expiry {
		return authnv1.TokenReviewStatus{Error: fmt.Sprintf("token of %q expired at %s", e.user, time.Unix(e.expiry, 0).UTC().Format(time.RFC3339))}
	}
	return authnv1.TokenReviewStatus{
		Authenticated: true,
		User: authnv1.UserInfo{
			Username: e.user,
			UID:      "token:" + e.user,
			Groups:   e.groups,
		},
	}
}

// runToken mints a random bearer token for a user and groups, appends it to DIR/tokens and
// prints it (and nothing else) on stdout.
func runToken(args []string) error {
	fs := flag.NewFlagSet("token", flag.ExitOnError)
	stateDir := fs.String("state-dir", "", "state directory given to 'up'")
	user := fs.String("user", "", "user name the token authenticates as")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	expired := fs.Bool("expired", false, "mint a token that has already expired")
	var groups stringList
	fs.Var(&groups, "group", "group (repeatable)")
	_ = fs.Parse(args)
	if *stateDir == "" || *user == "" {
		return errors.New("--state-dir and --user are required")
	}
	if strings.ContainsAny(*user, "\t\r\n") {
		return fmt.Errorf("user %q contains a tab or newline", *user)
	}
	for _, g := range groups {
		if g == "" || strings.ContainsAny(g, ",\t\r\n") || strings.TrimSpace(g) != g {
			return fmt.Errorf("group %q is empty, has surrounding spaces or contains a comma, tab or newline", g)
		}
	}
	if *ttl <= 0 {
		return fmt.Errorf("--ttl must be positive (got %s)", *ttl)
	}
	expiry := time.Now().Add(*ttl)
	if *expired {
		expiry = time.Now().Add(-time.Hour)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	token := tokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	line := fmt.Sprintf("%s\t%s\t%s\t%d\n", token, *user, strings.Join(groups, ","), expiry.Unix())
	if err := os.MkdirAll(*stateDir, 0o755); err != nil {
		return err
	}
	// One write to a file opened O_APPEND: lines of concurrent minters never interleave.
	f, err := os.OpenFile(tokensPath(*stateDir), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(line)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Println(token)
	return nil
}
