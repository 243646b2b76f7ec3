import { VERSION } from "../version.ts";
import { ollamaEmbedBody, ollamaEmbeddingsBody } from "./embeddings.ts";
import { collect, type Done, streamBody } from "./generation.ts";
import {
  chatBody,
  finalCounts,
  generateBody,
  ndjson,
  type OllamaChat,
  type OllamaGenerate,
  ollamaChat,
  ollamaGenerate,
  showBody,
} from "./ollama.ts";
import { ApiError, finishReason, parseBody } from "./openai.ts";
import { type ApiModel, embed, json, knownModel, launch, type Routed, readJson, toApiError } from "./routing.ts";

/** Ollama's routes (`/api/...`) on the gateway's port; the wire format is in ollama.ts. */
export async function ollamaRoute(req: Request, o: Routed): Promise<Response> {
  const { backend } = o;
  const path = new URL(req.url).pathname.replace(/\/+$/, "");
  if (req.method === "GET" && path === "/api/version") return json({ version: VERSION });
  if (req.method === "GET" && path === "/api/tags") {
    const models = (await backend.models(req.signal)).map(ollamaModel);
    return json({ models });
  }
  if (req.method === "POST" && path === "/api/show") {
    const body = parseBody(showBody, await readJson(req));
    const name = body.model ?? body.name;
    const found = (await backend.models(req.signal)).find((m) => m.id === name);
    if (!found) throw new ApiError(404, `model '${name}' not found`, "not_found_error");
    const { details } = ollamaModel(found);
    return json({
      details,
      model_info: { "infernet.providers": found.providers },
      capabilities: ["completion", "embedding"],
    });
  }
  if (req.method === "POST" && path === "/api/embed") {
    const body = parseBody(ollamaEmbedBody, await readJson(req));
    const started = performance.now();
    const model = knownModel(o, body.model);
    const done = await embed(req, o, model, typeof body.input === "string" ? [body.input] : body.input);
    return json(
      {
        model: model.id,
        embeddings: done.vectors.map((v) => Array.from(v)),
        total_duration: Math.round((performance.now() - started) * 1e6),
        prompt_eval_count: done.usage.inputTokens,
      },
      200,
      done.headers,
    );
  }
  if (req.method === "POST" && path === "/api/embeddings") {
    const body = parseBody(ollamaEmbeddingsBody, await readJson(req));
    const done = await embed(req, o, knownModel(o, body.model), [body.prompt]);
    return json({ embedding: Array.from(done.vectors[0] ?? []) }, 200, done.headers);
  }
  if (req.method === "POST" && (path === "/api/generate" || path === "/api/chat")) {
    const chat = path === "/api/chat";
    const body = chat ? parseBody(chatBody, await readJson(req)) : parseBody(generateBody, await readJson(req));
    const model = backend.model(body.model);
    if (!model) throw new ApiError(404, `model '${body.model}' not found`, "not_found_error");
    const request = chat ? ollamaChat(body as OllamaChat) : ollamaGenerate(body as OllamaGenerate);
    const started = performance.now();
    const [g] = await launch(req, o, model, request);
    if (!g) throw new ApiError(500, "no generation started", "server_error");
    const frame = (text: string, done: boolean) => ({
      model: model.id,
      created_at: new Date().toISOString(),
      ...(chat ? { message: { role: "assistant", content: text } } : { response: text }),
      done,
    });
    const final = (event: Done) => ({
      ...frame("", true),
      done_reason: finishReason(event.finishReason),
      ...finalCounts(event.usage, performance.now() - started),
    });
    if (body.stream === false) {
      const { text, done } = await collect(g);
      return json({ ...final(done), ...frame(text, true) }, 200, g.headers);
    }
    const stream = streamBody([g], {
      token: (text) => [ndjson(frame(text, false))],
      done: (event) => [ndjson(final(event))],
      close: () => [],
      error: (err) => ndjson({ error: toApiError(err).message }),
    });
    return new Response(stream, { headers: { "content-type": "application/x-ndjson", ...g.headers } });
  }
  throw new ApiError(404, `no route ${req.method} ${path}`, "not_found_error");
}

function ollamaModel(m: ApiModel) {
  return {
    name: m.id,
    model: m.id,
    modified_at: new Date(0).toISOString(),
    size: m.bytes,
    digest: m.sha256,
    details: { format: "gguf", family: "llama", families: ["llama"], parameter_size: "", quantization_level: "" },
  };
}
