package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The data servers of the local cloud: a real PostgreSQL and a real Redis from the
// Debian packages (postgresql, redis-server), on loopback, for the data-service broker
// and its tests. Their data lives under DIR/data; their admin credentials are in
// DIR/postgres-admin and DIR/redis-admin (mode 0600), one key=value a line:
//
//	host=127.0.0.1
//	port=15432
//	user=govbroker_admin
//	password=...
//
// cluster.env names those files, never the passwords, and nothing logs a password.

const (
	postgresPort = 15432
	redisPort    = 16379
	// redisTLSPort serves the same Redis over TLS (certificate of the cluster CA).
	redisTLSPort = 16380
	// postgresAdminUser is initdb's bootstrap superuser: the broker creates roles and
	// databases with it.
	postgresAdminUser = "govbroker_admin"
	// redisAdminUser has every permission; Redis's "default" user is disabled.
	redisAdminUser = "govbroker-admin"
	// pgBinEnv names a directory with initdb, postgres and pg_isready, instead of the
	// highest /usr/lib/postgresql/*/bin.
	pgBinEnv = "GOVBROKER_PG_BIN"
)

func postgresAdminPath(stateDir string) string { return filepath.Join(stateDir, "postgres-admin") }
func redisAdminPath(stateDir string) string    { return filepath.Join(stateDir, "redis-admin") }

// adminCredentials is what DIR/postgres-admin and DIR/redis-admin hold.
type adminCredentials struct {
	host     string
	port     int
	user     string
	password string
}

// write stores the credentials with mode 0600 (written aside, then renamed into place).
func (c adminCredentials) write(path string) error {
	content := fmt.Sprintf("host=%s\nport=%d\nuser=%s\npassword=%s\n", c.host, c.port, c.user, c.password)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readAdminCredentials(path string) (adminCredentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return adminCredentials{}, err
	}
	defer f.Close()
	var c adminCredentials
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch key {
		case "host":
			c.host = value
		case "port":
			c.port, _ = strconv.Atoi(value)
		case "user":
			c.user = value
		case "password":
			c.password = value
		}
	}
	if err := sc.Err(); err != nil {
		return adminCredentials{}, err
	}
	if c.host == "" || c.port == 0 || c.user == "" || c.password == "" {
		return adminCredentials{}, fmt.Errorf("%s lacks host, port, user or password", path)
	}
	return c, nil
}

// newPassword returns 32 random bytes, base64url-encoded (43 characters).
func newPassword() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// stopSignal is how a component is asked to stop: PostgreSQL's SIGTERM would wait for
// every client to disconnect, SIGINT ("fast shutdown") does not.
func stopSignal(name string) syscall.Signal {
	if name == "postgres" {
		return syscall.SIGINT
	}
	return syscall.SIGTERM
}

// postgresBinDir is $GOVBROKER_PG_BIN, or the highest /usr/lib/postgresql/<major>/bin
// (Debian keeps the server binaries off PATH).
func postgresBinDir() (string, error) {
	if dir := os.Getenv(pgBinEnv); dir != "" {
		return dir, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", fmt.Errorf("no PostgreSQL server in /usr/lib/postgresql/*/bin: install the Debian package postgresql (cargo xtask cluster up does), or set %s", pgBinEnv)
	}
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return filepath.Dir(found[0]), nil
}

// postgresCredential is who PostgreSQL runs as: it refuses to run as root, so a root
// govcluster runs it as the "postgres" system user (created by the Debian package); any
// other user runs it as itself (nil).
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("PostgreSQL cannot run as root and there is no postgres user to run it as (install the Debian package postgresql): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// chownTo gives path to the user PostgreSQL runs as (nothing to do when that is us).
func chownTo(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return os.Chown(path, int(cred.Uid), int(cred.Gid))
}

// postgresDataDir is where PostgreSQL keeps its data: DIR/data/postgres, unless PostgreSQL
// runs as another user (govcluster is root) who may not be able to reach DIR (a state dir
// under /root, as CI's is): then a directory of its own under /var/lib/govbroker-local,
// named by a hash of DIR, which 'down --purge' removes with the rest.
func postgresDataDir(stateDir string, cred *syscall.Credential) (string, error) {
	if cred == nil {
		return filepath.Join(stateDir, "data", "postgres"), nil
	}
	sum := sha256.Sum256([]byte(stateDir))
	base := filepath.Join("/var/lib/govbroker-local", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	return filepath.Join(base, "postgres"), nil
}

// purgePostgres removes PostgreSQL's data wherever postgresDataDir put it.
func purgePostgres(stateDir string) error {
	cred, err := postgresCredential()
	if err != nil || cred == nil {
		return nil // inside DIR/data, removed with it
	}
	if stateDir, err = filepath.Abs(stateDir); err != nil {
		return err
	}
	dataDir, err := postgresDataDir(stateDir, cred)
	if err != nil {
		return err
	}
	return os.RemoveAll(filepath.Dir(dataDir))
}

// preparePostgres initialises DIR/data/postgres on first start (initdb with a generated
// password for govbroker_admin, written to DIR/postgres-admin), writes its pg_hba.conf
// and returns the component that runs it.
func preparePostgres(stateDir string) (component, error) {
	binDir, err := postgresBinDir()
	if err != nil {
		return component{}, err
	}
	for _, b := range []string{"postgres", "initdb", "pg_isready"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return component{}, fmt.Errorf("PostgreSQL's %s is not in %s: %w", b, binDir, err)
		}
	}
	cred, err := postgresCredential()
	if err != nil {
		return component{}, err
	}
	dataDir, err := postgresDataDir(stateDir, cred)
	if err != nil {
		return component{}, err
	}
	credsPath := postgresAdminPath(stateDir)
	_, pgErr := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	_, credsErr := readAdminCredentials(credsPath)
	orphan := pgErr == nil && credsErr != nil && !strings.HasPrefix(dataDir, stateDir+string(filepath.Separator))
	if orphan {
		// The data lives outside the state dir (/var/lib/govbroker-local/<hash>) and the
		// state dir was removed without 'down --purge' (e.g. a deleted target dir): its
		// password went with it, so nobody can use that database again. Start afresh.
		fmt.Printf("  removing orphaned PostgreSQL data in %s (its state dir %s no longer holds the admin password)\n", dataDir, stateDir)
		if err := initPostgres(stateDir, binDir, dataDir, cred); err != nil {
			return component{}, fmt.Errorf("initialising PostgreSQL in %s: %w (see %s)", dataDir, err, logPath(stateDir, "postgres"))
		}
	} else if pgErr == nil {
		if credsErr != nil {
			return component{}, fmt.Errorf("%s holds a database but its admin password is lost (%v): forget it with 'govcluster down --purge'", dataDir, credsErr)
		}
	} else if err := initPostgres(stateDir, binDir, dataDir, cred); err != nil {
		return component{}, fmt.Errorf("initialising PostgreSQL in %s: %w (see %s)", dataDir, err, logPath(stateDir, "postgres"))
	}

	// Password (SCRAM) logins only: over TCP from 127.0.0.1, and on the unix socket.
	hba := "# Written by govcluster up.\n" +
		"# TYPE  DATABASE  USER  ADDRESS       METHOD\n" +
		"local   all       all                 scram-sha-256\n" +
		"host    all       all   127.0.0.1/32  scram-sha-256\n"
	hbaPath := filepath.Join(dataDir, "pg_hba.conf")
	if err := os.WriteFile(hbaPath, []byte(hba), 0o600); err != nil {
		return component{}, err
	}
	if err := chownTo(hbaPath, cred); err != nil {
		return component{}, err
	}

	// TLS with a serving certificate of the cluster's CA (<state>/pki/ca.crt), so that
	// classes with tls.enabled can be tested; plain connections stay allowed. The key is
	// copied into the data directory: PostgreSQL wants it owned by its user, mode 0600.
	p, err := loadOrCreatePKI(filepath.Join(stateDir, "pki"))
	if err != nil {
		return component{}, err
	}
	if err := p.ensureServing("postgres", "127.0.0.1", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return component{}, err
	}
	for _, f := range []struct{ from, to string }{{"postgres.crt", "server.crt"}, {"postgres.key", "server.key"}} {
		data, err := os.ReadFile(p.path(f.from))
		if err != nil {
			return component{}, err
		}
		to := filepath.Join(dataDir, f.to)
		if err := os.WriteFile(to, data, 0o600); err != nil {
			return component{}, err
		}
		if err := chownTo(to, cred); err != nil {
			return component{}, err
		}
	}

	// The unix socket sits in the data directory, unless the path is too long for one
	// (sun_path holds 107 bytes); clients use TCP anyway.
	socketDir := dataDir
	if len(filepath.Join(socketDir, fmt.Sprintf(".s.PGSQL.%d.lock", postgresPort))) > 100 {
		socketDir = ""
	}
	return component{
		name: "postgres", port: postgresPort, credential: cred, dir: dataDir,
		args: []string{filepath.Join(binDir, "postgres"), "-D", dataDir,
			"-c", "listen_addresses=127.0.0.1",
			"-c", "port=" + strconv.Itoa(postgresPort),
			"-c", "unix_socket_directories=" + socketDir,
			"-c", "shared_buffers=32MB",
			"-c", "max_connections=100",
			"-c", "ssl=on",
			"-c", "ssl_cert_file=server.crt",
			"-c", "ssl_key_file=server.key",
		},
		ready: func(timeout time.Duration) error { return waitPostgres(stateDir, binDir, timeout) },
	}, nil
}

// initPostgres runs initdb into dataDir (emptied first: an earlier initdb may have
// stopped half-way) with a new password for the superuser govbroker_admin, and records
// the password in DIR/postgres-admin.
func initPostgres(stateDir, binDir, dataDir string, cred *syscall.Credential) error {
	password, err := newPassword()
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if err := chownTo(dataDir, cred); err != nil {
		return err
	}
	// initdb reads the password from a file only its user can read, removed right after.
	pwFile := filepath.Join(filepath.Dir(dataDir), ".postgres-initdb-password")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwFile)
	if err := chownTo(pwFile, cred); err != nil {
		return err
	}
	logFile, err := os.OpenFile(logPath(stateDir, "postgres"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "\n=== %s initdb into %s (superuser %s)\n", time.Now().Format(time.RFC3339), dataDir, postgresAdminUser)
	cmd := exec.Command(filepath.Join(binDir, "initdb"), "-D", dataDir,
		"--username", postgresAdminUser, "--pwfile", pwFile, "--auth", "scram-sha-256",
		"--encoding", "UTF8", "--no-locale", "--no-instructions")
	cmd.Dir = dataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	fmt.Printf("  initialising PostgreSQL in %s (initdb, superuser %s)\n", dataDir, postgresAdminUser)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	return adminCredentials{host: "127.0.0.1", port: postgresPort, user: postgresAdminUser, password: password}.write(postgresAdminPath(stateDir))
}

// waitPostgres returns once PostgreSQL accepts connections (pg_isready), not merely
// listens: it listens while it is still starting up or recovering.
func waitPostgres(stateDir, binDir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := exec.Command(filepath.Join(binDir, "pg_isready"), "--quiet", "--timeout", "2",
			"--host", "127.0.0.1", "--port", strconv.Itoa(postgresPort)).Run()
		if err == nil {
			return nil
		}
		if !alive(stateDir, "postgres") {
			return fmt.Errorf("postgres exited during start-up; its log %s ends with:\n%s", logPath(stateDir, "postgres"), tail(logPath(stateDir, "postgres"), 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres does not accept connections on 127.0.0.1:%d within %s (see %s)", postgresPort, timeout, logPath(stateDir, "postgres"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// prepareRedis writes Redis's configuration (mode 0600: it holds the admin password, which
// thus never shows on a command line) and returns the component that runs it. The admin
// password is kept across restarts in DIR/redis-admin; Redis keeps no data (no RDB, no AOF).
func prepareRedis(stateDir string) (component, error) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		return component{}, fmt.Errorf("redis-server is not installed: install the Debian package redis-server (cargo xtask cluster up does): %w", err)
	}
	dataDir := filepath.Join(stateDir, "data", "redis")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return component{}, err
	}
	creds, err := readAdminCredentials(redisAdminPath(stateDir))
	if err != nil {
		password, err := newPassword()
		if err != nil {
			return component{}, err
		}
		creds = adminCredentials{host: "127.0.0.1", port: redisPort, user: redisAdminUser, password: password}
		if err := creds.write(redisAdminPath(stateDir)); err != nil {
			return component{}, err
		}
	}
	// TLS on a second port, with a serving certificate of the cluster's CA, so that
	// classes with tls.enabled can be tested; clients need no certificate.
	p, err := loadOrCreatePKI(filepath.Join(stateDir, "pki"))
	if err != nil {
		return component{}, err
	}
	if err := p.ensureServing("redis", "127.0.0.1", []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return component{}, err
	}
	conf := fmt.Sprintf(`# Written by govcluster up; mode 0600, it holds the admin password.
bind 127.0.0.1
tls-port %d
tls-cert-file %q
tls-key-file %q
tls-ca-cert-file %q
tls-auth-clients no
port %d
protected-mode yes
daemonize no
logfile ""
save ""
appendonly no
dir %q
# Nobody logs in as "default"; the admin has every permission.
user default off resetpass resetkeys resetchannels -@all
user %s on >%s ~* &* +@all
`, redisTLSPort, p.path("redis.crt"), p.path("redis.key"), p.path("ca.crt"), redisPort, dataDir, redisAdminUser, creds.password)
	confPath := filepath.Join(dataDir, "redis.conf")
	tmp := confPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(conf), 0o600); err != nil {
		return component{}, err
	}
	if err := os.Rename(tmp, confPath); err != nil {
		return component{}, err
	}
	return component{
		name: "redis", port: redisPort, args: []string{server, confPath},
		ready: func(timeout time.Duration) error { return waitRedis(stateDir, creds, timeout) },
	}, nil
}

// waitRedis returns once the admin can log in to Redis and PING it.
func waitRedis(stateDir string, creds adminCredentials, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := pingRedis(creds)
		if err == nil {
			return nil
		}
		if !alive(stateDir, "redis") {
			return fmt.Errorf("redis exited during start-up; its log %s ends with:\n%s", logPath(stateDir, "redis"), tail(logPath(stateDir, "redis"), 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis does not answer the admin on 127.0.0.1:%d within %s: %v (see %s)", redisPort, timeout, err, logPath(stateDir, "redis"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pingRedis sends AUTH and PING (RESP arrays) and expects +OK and +PONG. Its errors
// never quote the password.
func pingRedis(creds adminCredentials) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(creds.host, strconv.Itoa(creds.port)), 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	resp := func(args ...string) string {
		s := fmt.Sprintf("*%d\r\n", len(args))
		for _, a := range args {
			s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
		}
		return s
	}
	if _, err := conn.Write([]byte(resp("AUTH", creds.user, creds.password) + resp("PING"))); err != nil {
		return err
	}
	r := bufio.NewReader(conn)
	for _, want := range []string{"+OK", "+PONG"} {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if got := strings.TrimRight(line, "\r\n"); got != want {
			return errors.New("redis answered " + got)
		}
	}
	return nil
}
