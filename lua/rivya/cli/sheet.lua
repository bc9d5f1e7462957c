--- rivya.cli.sheet: a sweep's contact sheet, index.html.

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;" }))
end

local function url_escape_path(s)
  return (s:gsub("[^%w%-._~/]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function slug(s)
  s = tostring(s):gsub("[^%w.]+", "-"):gsub("^-+", ""):gsub("-+$", "")
  return s:sub(1, 40)
end

local CONTACT_CSS = [[
*{box-sizing:border-box}
body{margin:0;padding:24px;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  background:#111418;color:#e8eaed}
header{margin-bottom:20px}
h1{margin:0 0 8px;font-size:20px;font-weight:600}
.prompt{margin:0 0 6px;font-size:15px;color:#fff;max-width:80em}
.meta{color:#9aa0a6;margin:0}
.meta b{color:#e8eaed;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:16px}
.variant{margin:0;background:#1c2026;border:1px solid #2c313a;border-radius:8px;overflow:hidden}
.variant video,.variant .missing{display:block;width:100%;aspect-ratio:16/9;background:#000}
.variant .missing{display:flex;align-items:center;justify-content:center;color:#f28b82;padding:12px;text-align:center}
figcaption{padding:10px 12px}
figcaption h2{margin:0 0 6px;font-size:14px;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:12px}
th,td{text-align:left;padding:2px 6px 2px 0;vertical-align:top}
th{color:#9aa0a6;font-weight:400;width:40%}
tr.swept td{color:#8ab4f8;font-weight:600}
.task{margin-top:6px;color:#9aa0a6;font-size:11px;word-break:break-all}
.status-failed h2,.status-error h2{color:#f28b82}
]]

-- index.html: every variant's video beside its parameters. Self-contained:
-- inline CSS, no script, videos by relative path next to it.
local function write_contact_sheet(path, sheet)
  local h = {}
  local function w(...) for i = 1, select("#", ...) do h[#h + 1] = select(i, ...) end end
  local swept = {}
  for _, d in ipairs(sheet.dims) do swept[d.name] = true end
  w("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<title>rivya sweep: ", html_escape(#sheet.variants), " variants</title>\n<style>\n", CONTACT_CSS,
    "</style>\n</head>\n<body>\n<header>\n<h1>rivya sweep · ", html_escape(#sheet.variants), " variants</h1>\n")
  for _, prompt in ipairs(sheet.prompts) do w("<p class=\"prompt\">", html_escape(prompt), "</p>\n") end
  local dim_names = {}
  for _, d in ipairs(sheet.dims) do dim_names[#dim_names + 1] = d.name end
  w("<p class=\"meta\">model <b>", html_escape(sheet.model), "</b> · swept <b>",
    html_escape(#dim_names > 0 and table.concat(dim_names, " × ") or "nothing"), "</b> · <b>",
    html_escape(sheet.credits), "</b> credits reserved · generated ", html_escape(sheet.generated), "</p>\n",
    "</header>\n<main class=\"grid\">\n")
  for _, v in ipairs(sheet.variants) do
    w(("<figure class=\"variant status-%s\" id=\"variant-%d\" data-variant=\"%d\" data-status=\"%s\">\n")
      :format(html_escape(v.status), v.n, v.n, html_escape(v.status)))
    if v.status == "succeeded" then
      w("<video src=\"", html_escape(url_escape_path(v.file)), "\" controls loop muted playsinline ",
        "preload=\"metadata\"></video>\n")
    else
      w("<div class=\"missing\">", html_escape(v.status), v.error and (": " .. html_escape(v.error)) or "",
        "</div>\n")
    end
    local title = {}
    for _, d in ipairs(sheet.dims) do title[#title + 1] = d.name .. " " .. tostring(v.values[d.name]) end
    w("<figcaption>\n<h2>#", v.n, #title > 0 and (" · " .. html_escape(table.concat(title, " · "))) or "",
      "</h2>\n<table class=\"params\">\n")
    for _, row in ipairs(v.rows) do
      w(("<tr%s><th>%s</th><td>%s</td></tr>\n"):format(swept[row[1]] and " class=\"swept\"" or "",
        html_escape(row[1]), html_escape(row[2])))
    end
    w("</table>\n<div class=\"task\">", html_escape(v.task_id or "no task"), " · ", html_escape(v.file), "</div>\n",
      "</figcaption>\n</figure>\n")
  end
  w("</main>\n</body>\n</html>\n")
  local tmp = path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then return nil, err end
  -- a write or close that fails (a full disk) leaves the last whole sheet in place
  local ok, werr = f:write(table.concat(h))
  local closed, cerr = f:close()
  if not (ok and closed) then
    os.remove(tmp)
    return nil, werr or cerr
  end
  return os.rename(tmp, path)
end

return { write = write_contact_sheet, slug = slug }
