package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// runEtcd runs one single-member etcd, embedded at the version k8s.io/kubernetes requires
// (Debian's etcd is too old for current kube-apiserver).
func runEtcd(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ExitOnError)
	name := fs.String("name", "etcd", "member name")
	dataDir := fs.String("data-dir", "", "data directory (kept between restarts)")
	clientPort := fs.Int("client-port", 0, "loopback port for clients")
	peerPort := fs.Int("peer-port", 0, "loopback port for peers")
	quotaBytes := fs.Int64("quota-bytes", 2<<30, "backend size quota in bytes")
	fsync := fs.Bool("fsync", false, "fsync writes (off: faster tests, not crash-safe across power loss)")
	_ = fs.Parse(args)
	if *dataDir == "" || *clientPort == 0 || *peerPort == 0 {
		return fmt.Errorf("--data-dir, --client-port and --peer-port are required")
	}

	cfg := embed.NewConfig()
	cfg.Name = *name
	cfg.Dir = *dataDir
	clientURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", *clientPort))
	peerURL, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", *peerPort))
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = fmt.Sprintf("%s=%s", *name, peerURL.String())
	cfg.UnsafeNoFsync = !*fsync
	cfg.QuotaBackendBytes = *quotaBytes
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	cfg.LogLevel = "warn"

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Printf("etcd %s ready on %s\n", *name, clientURL)
	case <-time.After(60 * time.Second):
		e.Server.Stop()
		return fmt.Errorf("etcd %s not ready after 60s", *name)
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-stop:
		fmt.Printf("etcd %s stopping on %s\n", *name, s)
		return nil
	case err := <-e.Err():
		return fmt.Errorf("etcd %s failed: %w", *name, err)
	}
}
