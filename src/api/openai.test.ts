import { expect, test } from "bun:test";
import {
  ApiError,
  chatRequest,
  chatToGenerate,
  completionRequest,
  completionToGenerate,
  forcedTool,
  MAX_CHOICES,
  MAX_COMPLETION_TOKENS,
  parseBody,
  sse,
} from "./openai.ts";

test("a completion maps to a raw generation with the sampling fields the engine knows", () => {
  const body = parseBody(completionRequest, {
    model: "stories260k",
    prompt: "Once",
    max_tokens: 8,
    temperature: 0.7,
    top_p: 0.9,
    seed: 3,
    stop: "\n",
    stream: null,
  });
  expect(completionToGenerate(body)).toEqual({
    prompt: "Once",
    chat: false,
    maxTokens: 8,
    temperature: 0.7,
    topP: 0.9,
    seed: 3,
    stop: ["\n"],
  });
});

test("a chat: system and developer messages are the system prompt, the last user message the prompt, the rest the history", () => {
  const body = parseBody(chatRequest, {
    model: "m",
    messages: [
      { role: "system", content: "Be brief." },
      {
        role: "developer",
        content: [
          { type: "text", text: "No " },
          { type: "text", text: "lists." },
        ],
      },
      { role: "user", content: "Hi" },
    ],
    max_completion_tokens: 5,
    max_tokens: 9,
  });
  expect(chatToGenerate(body)).toEqual({ prompt: "Hi", chat: true, system: "Be brief.\n\nNo lists.", maxTokens: 5 });
  const turns = parseBody(chatRequest, {
    model: "m",
    messages: [
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
      { role: "user", content: "c" },
    ],
  });
  expect(chatToGenerate(turns)).toEqual({
    prompt: "c",
    chat: true,
    history: [
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
    ],
  });
  const endsWithAssistant = parseBody(chatRequest, {
    model: "m",
    messages: [
      { role: "user", content: "a" },
      { role: "assistant", content: "b" },
    ],
  });
  expect(() => chatToGenerate(endsWithAssistant)).toThrow(ApiError);
  const image = chatRequest.safeParse({
    model: "m",
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }],
  });
  expect(image.success).toBe(false);
});

test("bad fields are a 400 naming the field", () => {
  const err = (body: unknown) => {
    try {
      parseBody(completionRequest, body);
    } catch (e) {
      return e as ApiError;
    }
    throw new Error("parsed");
  };
  expect(err({ model: "m", prompt: "x", max_tokens: MAX_COMPLETION_TOKENS + 1 })).toMatchObject({
    status: 400,
    param: "max_tokens",
  });
  expect(err({ model: "m", prompt: 3 }).param).toBe("prompt");
  expect(err({ prompt: "x" }).param).toBe("model");
  expect(err({ model: "m", prompt: "x", n: MAX_CHOICES + 1 }).param).toBe("n");
  expect(err({ model: "m", prompt: "x", n: 0 }).param).toBe("n");
  expect(err({ model: "m", prompt: "x", stop: ["a", "b", "c", "d", "e"] }).param).toBe("stop");
  expect(err(null).status).toBe(400);
  // Asked for and not available: said, not silently left out.
  expect(err({ model: "m", prompt: "x", logprobs: 6 })).toMatchObject({ status: 400, param: "logprobs" });
  expect(completionToGenerate(parseBody(completionRequest, { model: "m", prompt: "x", logprobs: 2 })).logprobs).toBe(2);
  expect(parseBody(completionRequest, { model: "m", prompt: "x", logprobs: null, tools: [] }).prompt).toBe("x");
  const chat = (extra: object) =>
    chatToGenerate(parseBody(chatRequest, { model: "m", messages: [{ role: "user", content: "x" }], ...extra }));
  expect(chat({ logprobs: true, top_logprobs: 4 }).logprobs).toBe(4);
  expect(chat({ logprobs: true }).logprobs).toBe(0);
  expect(chat({ logprobs: false }).logprobs).toBeUndefined();
  expect(() => chat({ top_logprobs: 4 })).toThrow(/needs logprobs/);
  // The model choosing whether to call is not supported: refused, not ignored.
  expect(() => chat({ tools: [{ type: "function", function: { name: "f" } }] })).toThrow(
    /name the function in tool_choice/,
  );
  expect(() => chat({ tool_choice: { type: "function", function: { name: "f" } } })).toThrow(/no tools were given/);
  expect(() => chat({ functions: [{ name: "f" }] })).toThrow(/not supported/);
  const weather = {
    type: "function",
    function: { name: "weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
  };
  const forced = parseBody(chatRequest, {
    model: "m",
    messages: [{ role: "user", content: "x" }],
    tools: [weather],
    tool_choice: { type: "function", function: { name: "weather" } },
  });
  expect(forcedTool(forced)?.name).toBe("weather");
  expect(chatToGenerate(forced).format).toEqual({ type: "json_schema", schema: weather.function.parameters });
  const none = parseBody(chatRequest, {
    model: "m",
    messages: [{ role: "user", content: "x" }],
    tools: [weather],
    tool_choice: "none",
  });
  expect(chatToGenerate(none).format).toBeUndefined();
  const structured = parseBody(chatRequest, {
    model: "m",
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object" } } },
  });
  expect(chatToGenerate(structured).format).toEqual({ type: "json_schema", schema: { type: "object" } });
});

test("events are server-sent JSON lines, ending in [DONE]", () => {
  expect(sse({ a: 1 })).toBe('data: {"a":1}\n\n');
  expect(sse("[DONE]")).toBe("data: [DONE]\n\n");
  expect(new ApiError(404, "unknown model x", "not_found_error", "model", "model_not_found").body()).toEqual({
    error: { message: "unknown model x", type: "not_found_error", param: "model", code: "model_not_found" },
  });
});
