package main

import (
	"regexp"
	"time"
	"unicode/utf8"
)

// The chat's JSON messages. Every message has a "type".
//
// From the page:
//
//	{"type":"join","room":"lobby","nick":"ann"}   enter a room (leaving the current one)
//	{"type":"message","text":"hello"}             say something in the current room
//	{"type":"nick","nick":"anna"}                 change nickname
//
// To the page:
//
//	{"type":"welcome","nick":"ann"}
//	{"type":"history","room":"lobby","messages":[...]}     the room's last 50 messages
//	{"type":"message","room":"lobby","from":"ann","text":"hello","time":"..."}
//	{"type":"system","room":"lobby","text":"ann joined"}
//	{"type":"presence","room":"lobby","members":["ann","bob"]}
//	{"type":"error","error":"..."}                        the last request was refused

type inbound struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Nick string `json:"nick"`
	Text string `json:"text"`
}

type chatMessage struct {
	Type string    `json:"type"`
	Room string    `json:"room"`
	From string    `json:"from"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

type historyMsg struct {
	Type     string        `json:"type"`
	Room     string        `json:"room"`
	Messages []chatMessage `json:"messages"`
}

type systemMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Text string `json:"text"`
}

type presenceMsg struct {
	Type    string   `json:"type"`
	Room    string   `json:"room"`
	Members []string `json:"members"`
}

type welcomeMsg struct {
	Type string `json:"type"`
	Nick string `json:"nick"`
}

type errorMsg struct {
	Type  string `json:"type"`
	Error string `json:"error"`
}

const (
	maxText = 2000 // characters in one message
	maxNick = 24
)

var roomName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

func validNick(n string) bool {
	if n == "" || utf8.RuneCountInString(n) > maxNick {
		return false
	}
	for _, r := range n {
		if r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}
