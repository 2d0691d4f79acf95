// consulrpc: a Go client of Consul's server RPC, the way Consul's own agents call it:
// net/rpc with hashicorp/net-rpc-msgpackrpc and Consul's msgpack handle, either on a plain
// connection (first byte 0) or on yamux streams (first byte 4), decoding replies into
// Consul's struct shapes (written here from Consul's structs package: embedded QueryOptions,
// QueryMeta and RaftIndex, time.Duration fields).
//
// Usage: consulrpc -addr 127.0.0.1:8300 -mode plain|yamux < calls.json
// calls.json is a list of {"Op": ..., "Key", "Value", "Token", "Address", "ID", "Stale",
// "MinIndex", "MaxQueryTime" (a Go duration string)}; it prints one JSON list of
// {"Error": string, "Reply": ...} in the same order.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io/ioutil"
	"flag"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"reflect"
	"time"

	"github.com/hashicorp/go-msgpack/codec"
	msgpackrpc "github.com/hashicorp/net-rpc-msgpackrpc"
	"github.com/hashicorp/yamux"
)

// Consul's structs.MsgpackHandle.
var consulHandle = &codec.MsgpackHandle{
	RawToString: true,
	BasicHandle: codec.BasicHandle{DecodeOptions: codec.DecodeOptions{
		MapType: reflect.TypeOf(map[string]interface{}{}),
	}},
}

type QueryOptions struct {
	Token             string
	MinQueryIndex     uint64
	MaxQueryTime      time.Duration
	AllowStale        bool
	RequireConsistent bool
	MaxStaleDuration  time.Duration
}

type WriteRequest struct {
	Token string
}

type QuerySource struct {
	Datacenter string
	Segment    string
	Node       string
	Ip         string
}

type DCSpecificRequest struct {
	Datacenter      string
	NodeMetaFilters map[string]string
	Source          QuerySource
	QueryOptions
}

type KeyRequest struct {
	Datacenter string
	Key        string
	QueryOptions
}

type KeyListRequest struct {
	Datacenter string
	Prefix     string
	Seperator  string
	QueryOptions
}

type RaftIndex struct {
	CreateIndex uint64
	ModifyIndex uint64
}

type DirEntry struct {
	LockIndex uint64
	Key       string
	Flags     uint64
	Value     []byte
	Session   string
	RaftIndex
}

type KVSRequest struct {
	Datacenter string
	Op         string
	DirEnt     DirEntry
	WriteRequest
}

type QueryMeta struct {
	Index            uint64
	LastContact      time.Duration
	KnownLeader      bool
	ConsistencyLevel string
}

type IndexedDirEntries struct {
	Entries []*DirEntry
	QueryMeta
}

type IndexedKeyList struct {
	Keys []string
	QueryMeta
}

type RaftServer struct {
	ID              string
	Node            string
	Address         string
	Leader          bool
	ProtocolVersion string
	Voter           bool
}

type RaftConfigurationResponse struct {
	Servers []*RaftServer
	Index   uint64
}

type RaftRemovePeerRequest struct {
	Datacenter string
	Address    string
	ID         string
	WriteRequest
}

type RaftStats struct {
	LastContact string
	LastTerm    uint64
	LastIndex   uint64
}

type Call struct {
	Op           string
	Key          string
	Value        string
	Token        string
	Address      string
	ID           string
	Datacenter   string
	Stale        bool
	MinIndex     uint64
	MaxQueryTime string
}

type Result struct {
	Error string
	Reply interface{}
}

// caller is one way of making a call: net/rpc's Client (plain) or Consul's pool (yamux).
type caller func(method string, args interface{}, reply interface{}) error

func do(call caller, c Call) Result {
	q := QueryOptions{Token: c.Token, AllowStale: c.Stale, MinQueryIndex: c.MinIndex}
	if c.MaxQueryTime != "" {
		d, err := time.ParseDuration(c.MaxQueryTime)
		if err != nil {
			return Result{Error: "bad MaxQueryTime: " + err.Error()}
		}
		q.MaxQueryTime = d
	}
	dc := DCSpecificRequest{Datacenter: c.Datacenter, QueryOptions: q}
	var err error
	var reply interface{}
	switch c.Op {
	case "ping":
		var out struct{}
		err = call("Status.Ping", struct{}{}, &out)
		reply = out
	case "leader":
		var out string
		err = call("Status.Leader", &dc, &out)
		reply = out
	case "peers":
		var out []string
		err = call("Status.Peers", &dc, &out)
		reply = out
	case "stats":
		var out RaftStats
		err = call("Status.RaftStats", struct{}{}, &out)
		reply = out
	case "config":
		var out RaftConfigurationResponse
		err = call("Operator.RaftGetConfiguration", &dc, &out)
		reply = out
	case "remove-address", "remove-id":
		var out struct{}
		args := RaftRemovePeerRequest{Datacenter: c.Datacenter, Address: c.Address, ID: c.ID,
			WriteRequest: WriteRequest{Token: c.Token}}
		method := "Operator.RaftRemovePeerByAddress"
		if c.Op == "remove-id" {
			method = "Operator.RaftRemovePeerByID"
		}
		err = call(method, &args, &out)
		reply = out
	case "put":
		var out bool
		args := KVSRequest{Datacenter: c.Datacenter, Op: "set",
			DirEnt: DirEntry{Key: c.Key, Value: []byte(c.Value)}, WriteRequest: WriteRequest{Token: c.Token}}
		err = call("KVS.Apply", &args, &out)
		reply = out
	case "get", "list":
		var out IndexedDirEntries
		args := KeyRequest{Datacenter: c.Datacenter, Key: c.Key, QueryOptions: q}
		method := "KVS.Get"
		if c.Op == "list" {
			method = "KVS.List"
		}
		start := time.Now()
		err = call(method, &args, &out)
		entries := []map[string]interface{}{}
		for _, e := range out.Entries {
			entries = append(entries, map[string]interface{}{"Key": e.Key, "Value": string(e.Value),
				"CreateIndex": e.CreateIndex, "ModifyIndex": e.ModifyIndex})
		}
		reply = map[string]interface{}{"Entries": entries, "Index": out.Index,
			"LastContactNs": int64(out.LastContact), "KnownLeader": out.KnownLeader,
			"ConsistencyLevel": out.ConsistencyLevel, "TookMs": time.Since(start).Milliseconds()}
	case "keys":
		var out IndexedKeyList
		args := KeyListRequest{Datacenter: c.Datacenter, Prefix: c.Key, Seperator: "/", QueryOptions: q}
		err = call("KVS.ListKeys", &args, &out)
		reply = out.Keys
	case "unknown":
		var out struct{}
		err = call("KVS.NoSuchMethod", struct{}{}, &out)
	default:
		return Result{Error: "unknown op " + c.Op}
	}
	if err != nil {
		return Result{Error: err.Error()}
	}
	return Result{Reply: reply}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8300", "server RPC address")
	mode := flag.String("mode", "plain", "plain (byte 0, net/rpc Client) or yamux (byte 4, Consul's pool)")
	caFile := flag.String("ca-file", "", "with -cert-file/-key-file: TLS first (byte 3), as Consul's pool")
	certFile := flag.String("cert-file", "", "client certificate")
	keyFile := flag.String("key-file", "", "client key")
	serverName := flag.String("server-name", "server.dc1.consul", "name the server's certificate must carry")
	flag.Parse()
	var calls []Call
	if err := json.NewDecoder(os.Stdin).Decode(&calls); err != nil {
		fmt.Fprintln(os.Stderr, "bad input:", err)
		os.Exit(2)
	}
	conn, err := net.DialTimeout("tcp", *addr, 5*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	if *caFile != "" {
		// Consul's pool with TLS: byte RPCTLS, the handshake, then the mode's byte inside.
		pem, err := ioutil.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ca:", err)
			os.Exit(2)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cert:", err)
			os.Exit(2)
		}
		conn.Write([]byte{3}) // pool.RPCTLS
		tconn := tls.Client(conn, &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair},
			ServerName: *serverName})
		if err := tconn.Handshake(); err != nil {
			json.NewEncoder(os.Stdout).Encode([]Result{{Error: "tls: " + err.Error()}})
			return
		}
		conn = tconn
	}
	var call caller
	switch *mode {
	case "plain":
		conn.Write([]byte{0}) // pool.RPCConsul
		client := rpc.NewClientWithCodec(msgpackrpc.NewCodecFromHandle(true, true, conn, consulHandle))
		defer client.Close()
		call = func(method string, args interface{}, reply interface{}) error {
			return client.Call(method, args, reply)
		}
	case "yamux":
		conn.Write([]byte{4}) // pool.RPCMultiplexV2
		session, err := yamux.Client(conn, yamux.DefaultConfig())
		if err != nil {
			fmt.Fprintln(os.Stderr, "yamux:", err)
			os.Exit(1)
		}
		defer session.Close()
		// Consul's pool: one stream (and codec) per call, opened on the session.
		call = func(method string, args interface{}, reply interface{}) error {
			stream, err := session.Open()
			if err != nil {
				return err
			}
			defer stream.Close()
			cc := msgpackrpc.NewCodecFromHandle(true, true, stream, consulHandle)
			return msgpackrpc.CallWithCodec(cc, method, args, reply)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", *mode)
		os.Exit(2)
	}
	results := make([]Result, 0, len(calls))
	for _, c := range calls {
		results = append(results, do(call, c))
	}
	json.NewEncoder(os.Stdout).Encode(results)
}
