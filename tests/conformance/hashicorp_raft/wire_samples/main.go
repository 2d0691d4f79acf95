// Prints hashicorp/raft 1.1.2's NetworkTransport encodings of sample messages, one per line:
// "<name> <hex>". The Python codec's tests compare against these bytes.
package main

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/go-msgpack/codec"
	"github.com/hashicorp/raft"
)

func enc(v interface{}) string {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(v); err != nil {
		panic(err)
	}
	return hex.EncodeToString(buf.Bytes())
}

func main() {
	hdr := raft.RPCHeader{ProtocolVersion: 3}
	fmt.Println("append_entries", enc(&raft.AppendEntriesRequest{
		RPCHeader: hdr, Term: 5, Leader: []byte("127.0.0.1:8300"), PrevLogEntry: 10, PrevLogTerm: 4,
		Entries: []*raft.Log{
			{Index: 11, Term: 5, Type: raft.LogCommand, Data: []byte("hello")},
			{Index: 12, Term: 5, Type: raft.LogNoop},
		},
		LeaderCommitIndex: 9,
	}))
	fmt.Println("heartbeat", enc(&raft.AppendEntriesRequest{RPCHeader: hdr, Term: 7, Leader: []byte("127.0.0.2:8300")}))
	fmt.Println("append_entries_response", enc(&raft.AppendEntriesResponse{RPCHeader: hdr, Term: 5, LastLog: 12, Success: true}))
	fmt.Println("append_entries_response_fail", enc(&raft.AppendEntriesResponse{RPCHeader: hdr, Term: 6, LastLog: 3, NoRetryBackoff: true}))
	fmt.Println("request_vote", enc(&raft.RequestVoteRequest{RPCHeader: hdr, Term: 8, Candidate: []byte("127.0.0.3:8300"), LastLogIndex: 40, LastLogTerm: 7, LeadershipTransfer: true}))
	fmt.Println("request_vote_response", enc(&raft.RequestVoteResponse{RPCHeader: hdr, Term: 8, Granted: true}))
	cfg := raft.Configuration{Servers: []raft.Server{
		{Suffrage: raft.Voter, ID: "id-1", Address: "127.0.0.1:8300"},
		{Suffrage: raft.Nonvoter, ID: "id-2", Address: "127.0.0.2:8300"},
	}}
	fmt.Println("configuration", hex.EncodeToString(raft.EncodeConfiguration(cfg)))
	fmt.Println("install_snapshot", enc(&raft.InstallSnapshotRequest{RPCHeader: hdr, SnapshotVersion: 1, Term: 9,
		Leader: []byte("127.0.0.1:8300"), LastLogIndex: 100, LastLogTerm: 8,
		Configuration: raft.EncodeConfiguration(cfg), ConfigurationIndex: 90, Size: 3}))
	fmt.Println("install_snapshot_response", enc(&raft.InstallSnapshotResponse{RPCHeader: hdr, Term: 9, Success: true}))
	fmt.Println("timeout_now", enc(&raft.TimeoutNowRequest{RPCHeader: hdr}))
	fmt.Println("timeout_now_response", enc(&raft.TimeoutNowResponse{RPCHeader: hdr}))
	fmt.Println("error_string", enc("unknown rpc type 9"))
	fmt.Println("empty_string", enc(""))
	fmt.Println("big_data", enc(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte("x"), 300)})[:20])
}
