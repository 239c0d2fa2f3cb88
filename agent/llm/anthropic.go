// Package llm owns the model backends of agentmarket's LLM policy: the
// Anthropic Messages API through its Go SDK, and any OpenAI-compatible
// chat-completions endpoint (OpenAI, vLLM, a local llama.cpp server) over
// plain HTTP. Each implements agent.Model: it sends the conversation and
// the decision tools, forces a tool call, and returns the calls the model
// made without interpreting them; the agent package validates them.
package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"

	"github.com/agentmarket/agentmarket/agent"
)

// AnthropicOptions configure an Anthropic backend.
type AnthropicOptions struct {
	APIKey  string // required; usually ANTHROPIC_API_KEY
	Model   string // required, such as "claude-sonnet-4-5"
	BaseURL string // default: the SDK's (https://api.anthropic.com)
	// MaxTokens caps each answer. Default 1024.
	MaxTokens  int64
	HTTPClient *http.Client
	// MaxRetries is the SDK's retry count for transient failures. Default 2.
	MaxRetries *int
}

// Anthropic is agent.Model on the Anthropic Messages API.
type Anthropic struct {
	client    anthropic.Client
	model     string
	maxTokens int64
}

// NewAnthropic returns an Anthropic backend.
func NewAnthropic(o AnthropicOptions) (*Anthropic, error) {
	if o.APIKey == "" {
		return nil, errors.New("anthropic: an API key is required (set ANTHROPIC_API_KEY)")
	}
	if o.Model == "" {
		return nil, errors.New("anthropic: a model is required (--llm-model)")
	}
	opts := []option.RequestOption{option.WithAPIKey(o.APIKey)}
	if o.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(o.BaseURL))
	}
	if o.HTTPClient != nil {
		opts = append(opts, option.WithHTTPClient(o.HTTPClient))
	}
	if o.MaxRetries != nil {
		opts = append(opts, option.WithMaxRetries(*o.MaxRetries))
	}
	if o.MaxTokens == 0 {
		o.MaxTokens = 1024
	}
	return &Anthropic{client: anthropic.NewClient(opts...), model: o.Model, maxTokens: o.MaxTokens}, nil
}

// Complete sends one Messages API request that requires a tool call.
func (a *Anthropic) Complete(ctx context.Context, req agent.ModelRequest) (agent.ModelReply, error) {
	params := anthropic.MessageNewParams{
		Model:      anthropic.Model(a.model),
		MaxTokens:  a.maxTokens,
		ToolChoice: anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{}},
	}
	if req.System != "" {
		params.System = []anthropic.TextBlockParam{{Text: req.System}}
	}
	for _, t := range req.Tools {
		var schema struct {
			Properties map[string]any `json:"properties"`
			Required   []string       `json:"required"`
		}
		if err := json.Unmarshal(t.InputSchema, &schema); err != nil {
			return agent.ModelReply{}, fmt.Errorf("anthropic: tool %s schema: %w", t.Name, err)
		}
		tp := anthropic.ToolParam{Name: t.Name, Description: anthropic.String(t.Description),
			InputSchema: anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required}}
		params.Tools = append(params.Tools, anthropic.ToolUnionParam{OfTool: &tp})
	}
	for _, m := range req.Messages {
		var blocks []anthropic.ContentBlockParamUnion
		if m.Text != "" {
			blocks = append(blocks, anthropic.NewTextBlock(m.Text))
		}
		for _, c := range m.ToolCalls {
			var input any = json.RawMessage(c.Input)
			if !json.Valid(c.Input) {
				// A malformed call is replayed as an empty object: the
				// tool result that follows says what was wrong with it.
				input = map[string]any{}
			}
			blocks = append(blocks, anthropic.NewToolUseBlock(c.ID, input, c.Name))
		}
		for _, r := range m.ToolResults {
			blocks = append(blocks, anthropic.NewToolResultBlock(r.CallID, r.Content, r.IsError))
		}
		if m.Role == "assistant" {
			params.Messages = append(params.Messages, anthropic.NewAssistantMessage(blocks...))
		} else {
			params.Messages = append(params.Messages, anthropic.NewUserMessage(blocks...))
		}
	}
	msg, err := a.client.Messages.New(ctx, params)
	if err != nil {
		return agent.ModelReply{}, fmt.Errorf("anthropic: %w", err)
	}
	reply := agent.ModelReply{StopReason: string(msg.StopReason)}
	for _, b := range msg.Content {
		switch v := b.AsAny().(type) {
		case anthropic.TextBlock:
			reply.Text += v.Text
		case anthropic.ToolUseBlock:
			reply.ToolCalls = append(reply.ToolCalls, agent.ToolCall{ID: v.ID, Name: v.Name, Input: v.Input})
		}
	}
	return reply, nil
}
