-- The fenced code blocks of the user guides (docs/guide/*.md), for
-- spec/guides_spec.lua (which runs them) and for CMake (which builds the C
-- host programs: `lua5.4 spec/support/guide_blocks.lua OUTDIR FILE.md...`
-- writes every ```c file=NAME.c block to OUTDIR/NAME.c).
--
-- A block is {lang =, info = {word = true, key = value}, code =, line =}.
-- A ```text output block right after a code block is that block's expected
-- standard output (block.output).
local M = {}

function M.parse(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("a")
  f:close()
  local blocks, cur, n = {}, nil, 0
  for line in (text .. (text:sub(-1) == "\n" and "" or "\n")):gmatch("(.-)\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        cur.code = table.concat(cur.lines, "\n") .. (#cur.lines > 0 and "\n" or "")
        cur.lines = nil
        if cur.lang == "text" and cur.info.output then
          local prev = blocks[#blocks]
          assert(prev and not prev.output, ("%s:%d: an output block follows no code block"):format(path, cur.line))
          prev.output = cur.code
        else
          blocks[#blocks + 1] = cur
        end
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local lang, rest = line:match("^```(%w*)%s*(.-)%s*$")
      if lang then
        local info = {}
        for word in rest:gmatch("%S+") do
          local k, v = word:match("^([%w_]+)=(.*)$")
          if k then info[k] = v else info[word] = true end
        end
        cur = { lang = lang, info = info, lines = {}, line = n }
      end
    end
  end
  assert(not cur, ("%s:%d: unclosed code block"):format(path, cur and cur.line or 0))
  return blocks
end

-- every docs/guide/*.md, sorted
function M.guides(dir)
  local p = assert(io.popen("ls " .. dir .. "/*.md 2>/dev/null"))
  local list = {}
  for name in p:lines() do list[#list + 1] = name end
  p:close()
  table.sort(list)
  return list
end

if arg and arg[0] and arg[0]:match("guide_blocks%.lua$") and arg[1] then
  local outdir = arg[1]
  for i = 2, #arg do
    for _, b in ipairs(M.parse(arg[i])) do
      if b.lang == "c" and b.info.file then
        assert(b.info.file:match("^[%w_]+%.c$"), arg[i] .. ": bad file name " .. b.info.file)
        local out = assert(io.open(outdir .. "/" .. b.info.file, "wb"))
        out:write(b.code)
        out:close()
      end
    end
  end
end

return M
