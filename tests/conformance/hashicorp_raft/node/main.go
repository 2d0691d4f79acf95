// A hashicorp/raft 1.1.2 node for consim's acceptance tests: NetworkTransport behind Consul's
// first byte (1 = RPCRaft) on its server port, in-memory stores, an FSM that keeps what it is
// given. It starts with no configuration (it joins when a leader adds it), or with -peers FILE
// bootstraps from a configuration in Consul's peers.json format.
//
// Commands on stdin, one JSON line answered on stdout for each:
//   status | apply <hex data> | transfer | quit
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

const rpcRaft = 1

// raftLayer is Consul's: dialing writes the RPCRaft byte; accepted connections are those whose
// first byte is RPCRaft (anything else is closed, as Consul's server port would route it away).
type raftLayer struct {
	ln    net.Listener
	local net.IP
	conns chan net.Conn
}

func (l *raftLayer) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			close(l.conns)
			return
		}
		go func(c net.Conn) {
			b := make([]byte, 1)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, b); err != nil || b[0] != rpcRaft {
				c.Close()
				return
			}
			c.SetReadDeadline(time.Time{})
			l.conns <- c
		}(c)
	}
}

func (l *raftLayer) Accept() (net.Conn, error) {
	c, ok := <-l.conns
	if !ok {
		return nil, fmt.Errorf("listener closed")
	}
	return c, nil
}
func (l *raftLayer) Close() error   { return l.ln.Close() }
func (l *raftLayer) Addr() net.Addr { return l.ln.Addr() }
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: l.local}}
	c, err := d.Dial("tcp", string(address))
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{rpcRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

type fsm struct {
	mu       sync.Mutex
	applied  int
	lastData []byte
	snapshot []byte
	restores int
}

func (f *fsm) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied++
	f.lastData = append([]byte(nil), l.Data...)
	return nil
}

type snap struct{ data []byte }

func (s *snap) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}
func (s *snap) Release() {}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &snap{append([]byte(nil), f.snapshot...)}, nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	data, err := ioutil.ReadAll(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.snapshot = data
	f.restores++
	f.mu.Unlock()
	return nil
}

func main() {
	id := flag.String("id", "go-node", "server id")
	addr := flag.String("addr", "127.0.0.1:8300", "server port address")
	level := flag.String("log-level", "warn", "hclog level")
	peers := flag.String("peers", "", "bootstrap from this peers.json (protocol 3: id, address, non_voter)")
	flag.Parse()

	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(2)
	}
	layer := &raftLayer{ln: ln, local: net.ParseIP(host), conns: make(chan net.Conn, 16)}
	go layer.serve()
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.LevelFromString(*level), Output: os.Stderr})
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 3, Timeout: 10 * time.Second, Logger: logger,
	})
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(*id)
	conf.Logger = logger
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	if *peers != "" {
		// hashicorp's own reader of Consul's peers.json format
		configuration, err := raft.ReadConfigJSON(*peers)
		if err != nil {
			fmt.Fprintln(os.Stderr, "peers:", err)
			os.Exit(2)
		}
		if err := raft.BootstrapCluster(conf, store, store, snaps, trans, configuration); err != nil {
			panic(err)
		}
	}
	f := &fsm{}
	r, err := raft.NewRaft(conf, f, store, store, snaps, trans)
	if err != nil {
		panic(err)
	}

	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	fmt.Println(`{"ready": true}`)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "status":
			stats := r.Stats()
			f.mu.Lock()
			status := map[string]interface{}{
				"state": r.State().String(), "leader": string(r.Leader()),
				"term": stats["term"], "last_index": r.LastIndex(), "applied_index": r.AppliedIndex(),
				"commit_index": stats["commit_index"], "applied": f.applied,
				"last_data": hex.EncodeToString(f.lastData), "restores": f.restores,
				"snapshot_bytes": len(f.snapshot),
			}
			f.mu.Unlock()
			var servers []map[string]interface{}
			if future := r.GetConfiguration(); future.Error() == nil {
				for _, s := range future.Configuration().Servers {
					servers = append(servers, map[string]interface{}{
						"id": string(s.ID), "address": string(s.Address), "suffrage": s.Suffrage.String()})
				}
			}
			status["servers"] = servers
			out.Encode(status)
		case "apply":
			data, err := hex.DecodeString(fields[1])
			if err != nil {
				out.Encode(map[string]string{"error": err.Error()})
				continue
			}
			future := r.Apply(data, 5*time.Second)
			if err := future.Error(); err != nil {
				out.Encode(map[string]string{"error": err.Error()})
			} else {
				out.Encode(map[string]uint64{"index": future.Index()})
			}
		case "transfer":
			if err := r.LeadershipTransfer().Error(); err != nil {
				out.Encode(map[string]string{"error": err.Error()})
			} else {
				out.Encode(map[string]bool{"ok": true})
			}
		case "quit":
			r.Shutdown().Error()
			out.Encode(map[string]bool{"ok": true})
			return
		default:
			out.Encode(map[string]string{"error": "unknown command " + fields[0]})
		}
	}
}
