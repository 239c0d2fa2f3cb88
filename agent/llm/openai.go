package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/agentmarket/agentmarket/agent"
)

// OpenAIOptions configure an OpenAI-compatible backend.
type OpenAIOptions struct {
	// BaseURL is the API root that /chat/completions is under, such as
	// https://api.openai.com/v1 or http://127.0.0.1:8080/v1 for llama.cpp.
	BaseURL string
	APIKey  string // sent as a bearer token when set; usually OPENAI_API_KEY
	Model   string // required
	// MaxTokens caps each answer. Default 1024.
	MaxTokens  int
	HTTPClient *http.Client
}

// OpenAI is agent.Model on an OpenAI-compatible chat-completions endpoint.
type OpenAI struct {
	o OpenAIOptions
}

// NewOpenAI returns an OpenAI-compatible backend.
func NewOpenAI(o OpenAIOptions) (*OpenAI, error) {
	if o.BaseURL == "" {
		return nil, errors.New("openai: a base URL is required (--llm-base-url)")
	}
	if o.Model == "" {
		return nil, errors.New("openai: a model is required (--llm-model)")
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 1024
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return &OpenAI{o: o}, nil
}

// The chat-completions wire format, as much of it as tool calling needs.

type chatRequest struct {
	Model      string        `json:"model"`
	Messages   []chatMessage `json:"messages"`
	Tools      []chatTool    `json:"tools,omitempty"`
	ToolChoice string        `json:"tool_choice,omitempty"`
	MaxTokens  int           `json:"max_tokens,omitempty"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    *string        `json:"content"`
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatTool struct {
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
}

type chatToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name string `json:"name"`
		// Arguments is a string holding JSON, as the model wrote it.
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type chatResponse struct {
	Choices []struct {
		Message      chatMessage `json:"message"`
		FinishReason string      `json:"finish_reason"`
	} `json:"choices"`
	Error *struct {
		Message string `json:"message"`
		Type    string `json:"type"`
	} `json:"error"`
}

func text(s string) *string { return &s }

// Complete sends one chat-completions request that requires a tool call.
func (c *OpenAI) Complete(ctx context.Context, req agent.ModelRequest) (agent.ModelReply, error) {
	cr := chatRequest{Model: c.o.Model, ToolChoice: "required", MaxTokens: c.o.MaxTokens}
	if req.System != "" {
		cr.Messages = append(cr.Messages, chatMessage{Role: "system", Content: text(req.System)})
	}
	for _, t := range req.Tools {
		cr.Tools = append(cr.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: t.InputSchema}})
	}
	for _, m := range req.Messages {
		switch {
		case m.Role == "assistant":
			am := chatMessage{Role: "assistant"}
			if m.Text != "" {
				am.Content = text(m.Text)
			}
			for _, tc := range m.ToolCalls {
				var w chatToolCall
				w.ID, w.Type, w.Function.Name, w.Function.Arguments = tc.ID, "function", tc.Name, string(tc.Input)
				am.ToolCalls = append(am.ToolCalls, w)
			}
			cr.Messages = append(cr.Messages, am)
		default:
			for _, r := range m.ToolResults {
				cr.Messages = append(cr.Messages, chatMessage{Role: "tool", ToolCallID: r.CallID, Content: text(r.Content)})
			}
			if m.Text != "" {
				cr.Messages = append(cr.Messages, chatMessage{Role: "user", Content: text(m.Text)})
			}
		}
	}
	body, err := json.Marshal(cr)
	if err != nil {
		return agent.ModelReply{}, fmt.Errorf("openai: encode request: %w", err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.o.BaseURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return agent.ModelReply{}, fmt.Errorf("openai: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if c.o.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+c.o.APIKey)
	}
	resp, err := c.o.HTTPClient.Do(hr)
	if err != nil {
		return agent.ModelReply{}, fmt.Errorf("openai: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return agent.ModelReply{}, fmt.Errorf("openai: read response: %w", err)
	}
	var out chatResponse
	if err := json.Unmarshal(raw, &out); err != nil {
		return agent.ModelReply{}, fmt.Errorf("openai: status %d, response is not JSON: %.200q", resp.StatusCode, raw)
	}
	if resp.StatusCode != http.StatusOK || out.Error != nil {
		msg := http.StatusText(resp.StatusCode)
		if out.Error != nil {
			msg = out.Error.Message
		}
		return agent.ModelReply{}, fmt.Errorf("openai: status %d: %s", resp.StatusCode, msg)
	}
	if len(out.Choices) == 0 {
		return agent.ModelReply{}, errors.New("openai: response has no choices")
	}
	ch := out.Choices[0]
	reply := agent.ModelReply{StopReason: ch.FinishReason}
	if ch.Message.Content != nil {
		reply.Text = *ch.Message.Content
	}
	for _, tc := range ch.Message.ToolCalls {
		reply.ToolCalls = append(reply.ToolCalls, agent.ToolCall{ID: tc.ID, Name: tc.Function.Name, Input: json.RawMessage(tc.Function.Arguments)})
	}
	return reply, nil
}
