--- seeds.lua — writes the hand-made seeds of fuzz/corpus/{json,sim,sniff}:
-- well-formed answers, requests and file headers the fuzzers start from.
-- Run from the repository root: `lua5.4 fuzz/seeds.lua` (the result is
-- committed; the fuzzers' own finds are merged in by `make fuzz-merge`).
-- validate's seeds are the fuzzer's own: its input is a byte code.
local compat = require "rivya.compat"
local KEY = "rvya_sk_test_0123456789abcdef"

local function write(dir, name, data)
  compat.execute("mkdir -p fuzz/corpus/" .. dir)
  local f = assert(io.open("fuzz/corpus/" .. dir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

local MP4 = read("sim/sample.mp4")
local PNG = "\137PNG\r\n\26\n\0\0\0\rIHDR\0\0\0\1\0\0\0\1\8\6\0\0\0\31\21\196\137"
local JPEG = "\255\216\255\224\0\16JFIF\0\1\1\0\0\1\0\1\0\0"
-- EBML header, then Segment > Info > TimecodeScale (1 ms), Duration (2000.0 as a float)
local WEBM = "\26\69\223\163\159\66\134\129\1\66\247\129\1\66\242\129\4\66\243\129\8"
  .. "\66\130\132webm\66\135\129\4\66\133\129\2"
  .. "\24\83\128\103\1\0\0\0\0\0\0\19"
  .. "\21\73\169\102\142\42\215\177\131\15\66\64\68\137\132\68\250\0\0"

-- ---- json: answers to the client's calls ------------------------------------

local function answer(call, status, flags, headers, body)
  local head = ("HTTP/1.1 %d X\r\n"):format(status)
  for _, h in ipairs(headers) do head = head .. h .. "\r\n" end
  return ("%s %d %d\n%s\r\n%s"):format(call, status, flags, head, body)
end
local JSON = "Content-Type: application/json"
local TASK = '{"id":"task_1","status":"queued","model":"wan-2-7-video","created_at":"2025-01-01T00:00:00Z",'
  .. '"credits_reserved":80,"result":null,"error":null}'
local json = {
  models = answer("models", 200, 0, { JSON }, '{"data":[{"id":"wan-2-7-video","name":"Wan 2.7"}]}'),
  credits = answer("credits", 200, 0, { JSON, "X-Request-Id: req_1" }, '{"current_credits":920}'),
  credits_float = answer("credits", 200, 0, { JSON }, '{"current_credits":1e400}'),
  get = answer("get", 200, 0, { JSON }, TASK),
  get_done = answer("get", 200, 0, { JSON },
    '{"id":"task_1","status":"succeeded","result":{"primary_url":"https://cdn.example/v.mp4",'
    .. '"urls":["https://cdn.example/v.mp4"]}}'),
  create = answer("create", 201, 0, { JSON, "Idempotent-Replayed: true" }, TASK),
  upload = answer("upload", 201, 0, { JSON },
    '{"id":"file_1","url":"https://cdn.example/files/file_1/a.png","kind":"image",'
    .. '"mime_type":"image/png","size_bytes":64,"duration_seconds":null,"duration_token":null}'),
  download = answer("download", 200, 0, { "Content-Type: video/mp4" }, MP4:sub(1, 200)),
  download_404 = answer("download", 404, 0, { "Content-Type: text/html" }, "<h1>gone</h1>"),
  error_400 = answer("create", 400, 0, { JSON, "X-Request-Id: req_2" },
    '{"error":{"code":"validation_failed","message":"params.duration: expected one of 5, 10, 15",'
    .. '"field":"params.duration","requestId":"req_2"}}'),
  error_429 = answer("credits", 429, 0, { JSON, "Retry-After: 3" },
    '{"error":{"code":"rate_limited","message":"slow down"}}'),
  error_503_date = answer("get", 503, 0, { "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT" }, ""),
  -- regressions: a use-after-free in tostring(err), a two-line tostring(err),
  -- and NULL + 0 in push_headers (spec/regressions_spec.lua)
  regress_long_code = answer("credits", 400, 0, { JSON },
    '{"error":{"code":"' .. ("c"):rep(1100) .. '","message":"a\\nb"}}'),
  redirect = answer("get", 302, 0, { "Location: https://elsewhere.example/x?key=1" }, ""),
  continue = "create 201 0\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n" .. JSON .. "\r\n\r\n" .. TASK,
  timeout = answer("credits", 0, 9, {}, ""),
  too_large = answer("models", 200, 16, { JSON }, '{"data":[' .. ('"x",'):rep(20) .. '"x"]}'),
  chunked = answer("get", 200, 64, { JSON }, TASK),
  regress_multiline = answer("get", 500, 0, { "X-Request-Id: req_1\rX: 1" },
    '{"error":{"code":"boom","message":"one\\ntwo"}}'),
  regress_no_headers = "credits 200 0\n",
  regress_empty_code = answer("upload", 400, 0, { JSON }, '{"error":{"code":""}}'),
}
for name, data in pairs(json) do write("json", name, data) end

-- ---- sim: requests to the simulator -----------------------------------------

local function request(method, path, headers, body)
  local lines = { ("%s %s HTTP/1.1"):format(method, path), "Host: 127.0.0.1" }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end
local AUTH = "Authorization: Bearer " .. KEY
local GEN = '{"model":"wan-2-7-video","prompt":"a paper boat","params":{"duration":"10",'
  .. '"resolution":"1080p","prompt_extend":"false","seed":42}}'
local REFS = '{"model":"wan-2-7-video","prompt":"edit","params":{"referenceMediaItems":['
  .. '{"url":"http://127.0.0.1:1/files/file_1/a.mp4","kind":"video","durationToken":"dt_00"},'
  .. '{"url":"https://cdn.example/a.png","kind":"image","mimeType":"image/png"}]}}'

local function multipart(fields, file_name, file_type, data)
  local b = "----rivya-fuzz"
  local parts = {}
  for _, kv in ipairs(fields) do
    parts[#parts + 1] = ('--%s\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n'):format(b, kv[1], kv[2])
  end
  parts[#parts + 1] = ('--%s\r\nContent-Disposition: form-data; name="file"; filename="%s"\r\n'
    .. 'Content-Type: %s\r\n\r\n%s\r\n--%s--\r\n'):format(b, file_name, file_type, data, b)
  return table.concat(parts), "Content-Type: multipart/form-data; boundary=" .. b
end

local sim = {
  models = request("GET", "/api/v1/models"),
  credits = request("GET", "/api/v1/credits", { AUTH }),
  credits_no_key = request("GET", "/api/v1/credits"),
  credits_revoked = request("GET", "/api/v1/credits", { "Authorization: Bearer rvya_sk_revoked_0000" }),
  generation = request("POST", "/api/v1/generations",
    { AUTH, "Content-Type: application/json", "Idempotency-Key: k1" }, GEN),
  generation_refs = request("POST", "/api/v1/generations", { AUTH, "Content-Type: application/json" }, REFS),
  generation_bad_json = request("POST", "/api/v1/generations", { AUTH, "Content-Type: application/json" },
    '{"model": "wan-2-7-video", "prompt": '),
  generation_chunked = table.concat({ "POST /api/v1/generations HTTP/1.1", "Host: x", AUTH,
    "Content-Type: application/json", "Transfer-Encoding: chunked", "", ("%x"):format(#GEN), GEN, "0", "", "" },
    "\r\n"),
  get_task = request("GET", "/api/v1/generations/task_0123", { AUTH }),
  get_file = request("HEAD", "/api/v1/files/file_0123", { AUTH }),
  wrong_method = request("DELETE", "/api/v1/credits", { AUTH }),
  two_requests = request("GET", "/api/v1/models") .. request("GET", "/api/v1/credits", { AUTH }),
}
do
  local body, ct = multipart({ { "kind", "image" }, { "model", "wan-2-7-video" } }, "a.png", "image/png", PNG)
  sim.upload_png = request("POST", "/api/v1/files", { AUTH, ct }, body)
  body, ct = multipart({ { "kind", "video" }, { "client_request_id", "c1" } }, "s.mp4", "video/mp4", MP4)
  sim.upload_mp4 = request("POST", "/api/v1/files", { AUTH, ct }, body)
  body, ct = multipart({ { "kind", "video" } }, "w.webm", "video/webm", WEBM)
  sim.upload_webm = request("POST", "/api/v1/files", { AUTH, ct }, body)
  body, ct = multipart({}, "j.jpg", "image/jpeg", JPEG)
  sim.upload_no_kind = request("POST", "/api/v1/files", { AUTH, ct, "Expect: 100-continue" }, body)
end
do   -- regression: a NaN Duration passed as a duration (spec/regressions_spec.lua)
  local nan = WEBM:sub(1, -5) .. "\127\192\0\0"
  local body, ct = multipart({ { "kind", "video" } }, "n.webm", "video/webm", nan)
  sim.regress_webm_nan = request("POST", "/api/v1/files", { AUTH, ct }, body)
  sim.regress_webm_nan_media = "M" .. nan
end
do   -- the catalog's other models, webhooks (no worker runs in the fuzzer: nothing is sent)
  local JSON_CT = "Content-Type: application/json"
  sim.generation_image = request("POST", "/api/v1/generations", { AUTH, JSON_CT },
    '{"model":"z-image","prompt":"a kite","params":{"size":"1536x1024","steps":8,"guidance":2.5}}')
  sim.generation_tts = request("POST", "/api/v1/generations", { AUTH, JSON_CT },
    '{"model":"rivya-tts","prompt":"hello","params":{"voice":"ember","format":"wav","normalize":false}}')
  sim.generation_chat = request("POST", "/api/v1/generations", { AUTH, JSON_CT },
    '{"model":"rivya-chat","prompt":"hi"}')
  sim.webhook_create = request("POST", "/api/v1/webhooks", { AUTH, JSON_CT },
    '{"name":"r","url":"https://hooks.example.com/x","event_types":["generation.failed"]}')
  sim.webhook_rejected = request("POST", "/api/v1/webhooks", { AUTH, JSON_CT },
    '{"url":"https://[::ffff:10.0.0.1]:8443/x#f"}')
  sim.webhook_patch = request("PATCH", "/api/v1/webhooks/whend_0123", { AUTH, JSON_CT },
    '{"status":"disabled","name":null}')
  sim.webhook_test = request("POST", "/api/v1/webhooks/whend_0123/test", { AUTH })
  sim.webhook_deliveries = request("GET", "/api/v1/webhooks/whend_0123/deliveries", { AUTH })
  sim.webhook_events = request("GET", "/api/v1/webhook-events", { AUTH })
  sim.json_image = "J" .. '{"model":"z-image","prompt":"x","params":{"referenceMediaItems":'
    .. '[{"url":"https://a.example/a.png","kind":"image"}],"steps":51}}'
  sim.cdn_image = "C" .. request("GET", "/images/task_0123.png")
  sim.cdn_audio = "C" .. request("GET", "/audio/task_0123.wav")
end
sim.json_valid = "J" .. GEN
sim.json_refs = "J" .. REFS
sim.json_types = "J" .. '{"model":"wan-2-7-video","prompt":"x","params":{"duration":10,"seed":"7","watermark":true}}'
sim.media_mp4 = "M" .. MP4
sim.media_webm = "M" .. WEBM
sim.cdn_video = "C" .. request("GET", "/videos/task_0123/output.mp4")
sim.cdn_file = "C" .. request("GET", "/files/file_0123/a%20b.png", { AUTH })
for name, data in pairs(sim) do write("sim", name, data) end

-- ---- sniff: the first bytes of files ----------------------------------------

local sniff = {
  png = PNG, jpeg = JPEG, mp4 = MP4:sub(1, 64), webm = WEBM,
  webp = "RIFF\36\0\0\0WEBPVP8 ", wav = "RIFF\36\0\0\0WAVEfmt ",
  mov = "\0\0\0\20ftypqt  \0\0\2\0qt  ", m4a = "\0\0\0\28ftypM4A \0\0\0\0M4A mp42isom",
  m4b = "\0\0\0\28ftypM4B \0\0\0\0", mp3_id3 = "ID3\3\0\0\0\0\0\0", mp3_frame = "\255\251\144\100",
  aac = "\255\241\80\128\2\31\252", ogg = "OggS\0\2\0\0\0\0\0\0\0\0", text = "<!doctype html>",
}
for name, data in pairs(sniff) do write("sniff", name, data) end

-- ---- media: whole files as a download receives them --------------------------
-- (flag byte first: "\1" also runs the download path; then the file)

local function be32(n) return string.pack(">I4", n) end
local function le32(n) return string.pack("<I4", n) end
local IEND = be32(0) .. "IEND\174\66\96\130"
local FMT = "fmt " .. le32(16) .. string.pack("<I2I2I4I4I2I2", 1, 1, 8000, 8000, 1, 8)
local DATA = "data" .. le32(8) .. ("\128"):rep(8)
local WAV = "RIFF" .. le32(4 + #FMT + #DATA) .. "WAVE" .. FMT .. DATA
local OGG = "OggS\0\6" .. ("\0"):rep(8) .. le32(1) .. le32(0) .. le32(0) .. "\1\10" .. ("v"):rep(10)
local WEBM_SMALL = "\26\69\223\163\135\66\130\132webm\24\83\128\103\148" .. ("\0"):rep(20)
local FRAME = "\255\251\144\0" .. ("\0"):rep(413)
local ADTS = "\255\241\80\128\2\63\252" .. ("a"):rep(10)
local media = {
  mp4 = MP4, mp4_html = MP4:sub(1, 32) .. "<html><body>502</body></html>",
  mp4_large = MP4:sub(1, 32) .. be32(1) .. "mdat" .. be32(0) .. be32(24) .. ("\0"):rep(8),
  png = PNG .. IEND, png_open = PNG, jpeg = JPEG .. "\255\217",
  wav = WAV, webp = "RIFF" .. le32(12) .. "WEBPVP8 " .. le32(0),
  ogg = OGG, webm = WEBM, webm_small = WEBM_SMALL,
  mp3 = "ID3\4\0\0\0\0\0\0" .. FRAME .. FRAME, mp3_tag = FRAME .. "TAG" .. ("\0"):rep(125),
  aac = ADTS .. ADTS,
}
for name, data in pairs(media) do
  write("media", name, "\0" .. data)
  write("media", name .. "_saved", "\1" .. data)
end
