// Package devtemporal runs a Temporal server with its Web UI inside the calling process, for
// `transferd dev`: SQLite persistence in one file (WAL mode, synchronous=NORMAL), one namespace with
// transferd's search attributes, every service on 127.0.0.1. It is for development and tests on one
// machine, never for production, where a real Temporal cluster runs.
package devtemporal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/server/common/authorization"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
)

// Options configures the dev server. Zero values take the defaults.
type Options struct {
	// DatabaseFile is the SQLite file; it and its schema are created when missing. Required.
	DatabaseFile string
	// IP is the address every service binds; default 127.0.0.1.
	IP string
	// FrontendPort is the gRPC port clients dial; default 7233.
	FrontendPort int
	// UIPort is the Web UI's port; default 8233. A negative port runs no UI.
	UIPort int
	// Namespace is created at start; default "default".
	Namespace string
	// SearchAttributes are registered in the namespace at start.
	SearchAttributes map[string]enumspb.IndexedValueType
	// Log receives the server's warnings and errors.
	Log *slog.Logger
}

// Server is a running dev server.
type Server struct {
	server    temporal.Server
	ui        *uiserver.Server
	hostPort  string
	uiURL     string
	namespace string
	quiet     *atomic.Bool
}

// Start starts the server and its UI and returns once the frontend answers.
func Start(ctx context.Context, o Options) (*Server, error) {
	if o.DatabaseFile == "" {
		return nil, errors.New("devtemporal: a database file is required")
	}
	if o.IP == "" {
		o.IP = "127.0.0.1"
	}
	if o.FrontendPort == 0 {
		o.FrontendPort = 7233
	}
	if o.UIPort == 0 {
		o.UIPort = 8233
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(o.DatabaseFile), 0o755); err != nil {
		return nil, fmt.Errorf("devtemporal: %w", err)
	}
	for _, port := range append(o.ports(), o.UIPort) {
		if port > 0 && !portFree(o.IP, port) {
			return nil, fmt.Errorf("devtemporal: %s:%d is in use (is another Temporal server running?)", o.IP, port)
		}
	}
	cfg, err := serverConfig(o)
	if err != nil {
		return nil, err
	}
	sqlCfg := cfg.Persistence.DataStores[sqliteplugin.PluginName].SQL
	if _, err := os.Stat(o.DatabaseFile); errors.Is(err, os.ErrNotExist) {
		if err := sqlite.SetupSchema(sqlCfg); err != nil {
			return nil, fmt.Errorf("devtemporal: set up schema: %w", err)
		}
	}
	ns, err := sqlite.NewNamespaceConfig(cfg.ClusterMetadata.CurrentClusterName, o.Namespace, false, o.SearchAttributes)
	if err != nil {
		return nil, fmt.Errorf("devtemporal: namespace: %w", err)
	}
	if err := sqlite.CreateNamespaces(sqlCfg, ns); err != nil {
		return nil, fmt.Errorf("devtemporal: namespace: %w", err)
	}
	authorizer, err := authorization.GetAuthorizerFromConfig(&cfg.Global.Authorization)
	if err != nil {
		return nil, fmt.Errorf("devtemporal: %w", err)
	}
	quiet := &atomic.Bool{}
	quiet.Store(true)
	logger := slogLogger{l: o.Log, quiet: quiet}
	claimMapper, err := authorization.GetClaimMapperFromConfig(&cfg.Global.Authorization, logger)
	if err != nil {
		return nil, fmt.Errorf("devtemporal: %w", err)
	}
	srv, err := temporal.NewServer(
		temporal.WithConfig(cfg),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithLogger(logger),
		temporal.WithAuthorizer(authorizer),
		temporal.WithClaimMapper(func(*config.Config) authorization.ClaimMapper { return claimMapper }),
		temporal.WithDynamicConfigClient(dynamicconfig.StaticClient{
			dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
			// Search attributes registered while running are visible at once, not after a refresh.
			dynamicconfig.ForceSearchAttributesCacheRefreshOnRead.Key(): true,
			// One partition per task queue: with the few pollers of one machine, tasks that reach
			// the backlog of a non-root partition drain only by forwarding, a task or two a second
			// (seen under overload in transferd bench); a single partition drains at full speed.
			dynamicconfig.MatchingNumTaskqueueReadPartitions.Key():  1,
			dynamicconfig.MatchingNumTaskqueueWritePartitions.Key(): 1,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("devtemporal: %w", err)
	}
	if err := srv.Start(); err != nil {
		return nil, fmt.Errorf("devtemporal: start: %w", err)
	}
	s := &Server{server: srv, hostPort: net.JoinHostPort(o.IP, strconv.Itoa(o.FrontendPort)), namespace: o.Namespace,
		quiet: quiet}
	if o.UIPort > 0 {
		s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
			Host:                o.IP,
			Port:                o.UIPort,
			TemporalGRPCAddress: s.hostPort,
			EnableUI:            true,
			DefaultNamespace:    o.Namespace,
			CORS:                uiconfig.CORS{CookieInsecure: true},
			HideLogs:            true,
		}))
		go func() {
			if err := s.ui.Start(); err != nil {
				o.Log.Error("Temporal Web UI stopped", "err", err)
			}
		}()
		s.uiURL = fmt.Sprintf("http://%s", net.JoinHostPort(o.IP, strconv.Itoa(o.UIPort)))
	}
	if err := s.waitReady(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	quiet.Store(false)
	return s, nil
}

// waitReady waits for the frontend to answer health checks.
func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := client.DialContext(ctx, client.Options{HostPort: s.hostPort, Namespace: s.namespace,
			Logger: noSDKLog{}})
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("devtemporal: the server did not become ready: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// HostPort is the frontend address clients dial.
func (s *Server) HostPort() string { return s.hostPort }

// UIURL is the Web UI's address, or "" without a UI.
func (s *Server) UIURL() string { return s.uiURL }

// Stop stops the UI and the server.
func (s *Server) Stop() {
	s.quiet.Store(true)
	if s.ui != nil {
		s.ui.Stop()
	}
	_ = s.server.Stop()
}

func serverConfig(o Options) (*config.Config, error) {
	var cfg config.Config
	cfg.Global.Membership = config.Membership{MaxJoinDuration: 30 * time.Second, BroadcastAddress: o.IP}
	cfg.Persistence = config.Persistence{
		DefaultStore: sqliteplugin.PluginName, VisibilityStore: sqliteplugin.PluginName, NumHistoryShards: 1,
		DataStores: map[string]config.DataStore{sqliteplugin.PluginName: {SQL: &config.SQL{
			PluginName:   sqliteplugin.PluginName,
			DatabaseName: o.DatabaseFile,
			// WAL lets readers run beside the one writer; NORMAL syncs at checkpoints, not every
			// commit: a power cut may lose the last transactions of a dev server, a crash does not.
			ConnectAttributes: map[string]string{"mode": "rwc", "journal_mode": "wal", "synchronous": "NORMAL"},
		}}},
	}
	frontend := net.JoinHostPort(o.IP, strconv.Itoa(o.FrontendPort))
	cfg.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10, MasterClusterName: "active", CurrentClusterName: "active",
		ClusterInformation: map[string]cluster.ClusterInformation{
			"active": {Enabled: true, InitialFailoverVersion: 1, RPCAddress: frontend},
		},
	}
	cfg.DCRedirectionPolicy = config.DCRedirectionPolicy{Policy: "noop"}
	// The services take fixed ports next to the frontend's, gRPC and membership: a restarted server
	// then comes back as the same hosts, and does not wait for the dead process's membership to
	// expire before it serves again.
	cfg.Services = map[string]config.Service{}
	for i, name := range []string{"frontend", "history", "matching", "worker"} {
		rpc := config.RPC{GRPCPort: o.FrontendPort + i, MembershipPort: o.FrontendPort + 100 + i, BindOnIP: o.IP}
		if name == "frontend" {
			// The frontend's HTTP API, which Nexus needs; the SDK speaks gRPC.
			rpc.HTTPPort = o.FrontendPort + 10
		}
		cfg.Services[name] = config.Service{RPC: rpc}
	}
	cfg.Archival.History.State = "disabled"
	cfg.Archival.Visibility.State = "disabled"
	cfg.NamespaceDefaults.Archival.History.State = "disabled"
	cfg.NamespaceDefaults.Archival.Visibility.State = "disabled"
	cfg.PublicClient.HostPort = frontend
	return &cfg, nil
}

// ports lists the ports the server binds besides the UI's.
func (o Options) ports() []int { return Ports(o.FrontendPort) }

// Ports lists the ports a server with this frontend port binds besides the UI's: the four services'
// gRPC ports from the frontend's on, their membership ports 100 above, and the frontend's HTTP port
// 10 above. Other listeners of the same machine must keep out of them.
func Ports(frontend int) []int {
	p := frontend
	return []int{p, p + 1, p + 2, p + 3, p + 10, p + 100, p + 101, p + 102, p + 103}
}

// Free ports are picked at random from 10000-19999, below Linux's ephemeral range (32768 and up): a
// port the kernel handed out for a listen on port 0 could be taken by any outgoing connection between
// the pick and the server's listen, which for a server restarted by a test comes much later. The
// production-shaped cluster of internal/tcluster picks from 20000 up, so the two do not meet.
const pickFrom, pickSpan = 10000, 10000

// FreeAddrOutside returns a loopback address whose port is free now and none of taken: the API's and
// the Web UI's beside a dev server's Ports, which the server binds again when it restarts.
func FreeAddrOutside(taken []int) (string, error) {
	for range 1000 {
		p := pickFrom + rand.IntN(pickSpan)
		if !slices.Contains(taken, p) && portFree("127.0.0.1", p) {
			return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
		}
	}
	return "", errors.New("devtemporal: found no free port")
}

// FreeFrontendPort finds a frontend port on ip whose every port (Ports) is free now.
func FreeFrontendPort(ip string) (int, error) {
	for range 1000 {
		p := pickFrom + rand.IntN(pickSpan-103)
		free := true
		for _, q := range Ports(p) {
			free = free && portFree(ip, q)
		}
		if free {
			return p, nil
		}
	}
	return 0, errors.New("devtemporal: found no free block of ports")
}

func portFree(ip string, port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}
