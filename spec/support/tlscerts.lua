-- A throwaway PKI for the TLS specs:  local certs = require "tlscerts"
--
-- Made once per busted process with the openssl CLI in a fresh temporary
-- directory, which goes when the Lua state closes (busted ends with
-- os.exit(code, true)). busted restores package.loaded after each spec file,
-- so the table is kept in the registry and a second `require` in another
-- file reuses it. Every key is EC P-256 (quick to make). Leaf certificates
-- are issued by `openssl ca` with fixed dates, so their notBefore/notAfter
-- (and serial numbers) are known to the tests:
--
--   dir                  the directory
--   ca, ca_key           "lua-asyncio test CA" (trusted by the tests' clients)
--   ca2, ca2_key         "lua-asyncio other CA", unrelated to ca
--   capath               a directory holding ca under its hash name (openssl rehash)
--   server_cert/_key     C=ZZ, O=lua-asyncio tests, CN=localhost; SAN DNS:localhost,
--                        IP:127.0.0.1; by ca; serial server_serial; valid from
--                        server_not_before to server_not_after (getpeercert's format)
--   server_der           server_cert as DER (getpeercert(true))
--   server_combined      server_cert and server_key in one PEM file
--   server_key_encrypted server_key encrypted with `password` ("secret")
--   expired_cert/_key    CN=localhost, same SANs, by ca, valid only in January 2020
--   wrong_cert/_key      CN=wrong.example, SAN DNS:wrong.example only, by ca
--   other_cert/_key      CN=localhost, same SANs as server_cert, issued by ca2
--   client_cert/_key     CN=client, extendedKeyUsage clientAuth, by ca (mutual TLS)
--   garbage              a file that is no PEM at all
--   missing              a path that does not exist
--   openssl(args)        runs the openssl CLI (outside any sanitizer preload);
--                        returns ok, output
--   env                  the prefix that runs a command outside the sanitizer
--                        preload ("env -u LD_PRELOAD ... ")
local REGISTRY_KEY = "lua-asyncio spec tlscerts"

local reg = debug.getregistry()
if reg[REGISTRY_KEY] then
  return reg[REGISTRY_KEY]
end

-- Every command runs without the sanitizer runtime of the asan test pass
-- (LD_PRELOAD, ASAN_OPTIONS ...): LeakSanitizer reports from the programs
-- would change their exit status and fail the run.
local ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u UBSAN_OPTIONS -u OPENSSL_CONF "

local function sh_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function run(cmd)
  local p = assert(io.popen(ENV .. cmd .. " 2>&1"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return ok == true, out, how, code
end

local function openssl(args)
  return run("openssl " .. args)
end

local function must_run(cmd)
  local ok, out = run(cmd)
  if not ok then
    error("tlscerts: `" .. cmd .. "` failed:\n" .. out, 0)
  end
end

local function must(args)
  local ok, out = openssl(args)
  if not ok then
    error("tlscerts: `openssl " .. args .. "` failed:\n" .. out, 0)
  end
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local ok_dir, dir = run("mktemp -d /tmp/lua-asyncio-tls.XXXXXX")
dir = dir:gsub("%s+$", "")
if not ok_dir or dir == "" then
  error("tlscerts: mktemp -d failed: " .. dir, 0)
end

local function path(name) return dir .. "/" .. name end

local CONFIG = [[
[req]
distinguished_name = req_dn
prompt = no
[req_dn]
CN = unused

[ca]
default_ca = test_ca
[test_ca]
database = @DIR@/index.txt
new_certs_dir = @DIR@/issued
serial = @DIR@/serial
default_md = sha256
policy = policy_any
unique_subject = no
preserve = yes
email_in_dn = no
copy_extensions = none
[policy_any]
countryName = optional
organizationName = optional
commonName = supplied

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[wrong_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
]]

local cnf = path("openssl.cnf")
write(cnf, (CONFIG:gsub("@DIR@", dir)))
must_run("mkdir -p " .. sh_quote(path("issued")) .. " " .. sh_quote(path("capath")))
write(path("index.txt"), "")
write(path("index.txt.attr"), "unique_subject = no\n")

local function genkey(name)
  local file = path(name .. ".key")
  must("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. sh_quote(file))
  return file
end

local function self_signed_ca(name, cn)
  local key = genkey(name)
  local cert = path(name .. ".pem")
  must(("req -config %s -x509 -new -key %s -subj %s -days 3650 -sha256 -extensions v3_ca -set_serial 0x%s -out %s")
    :format(sh_quote(cnf), sh_quote(key), sh_quote("/CN=" .. cn), name == "ca" and "0A0A0A01" or "0B0B0B01",
            sh_quote(cert)))
  return cert, key
end

-- a leaf cert for `subj` issued by (cacert, cakey) with extension section `ext`
local function issue(name, subj, cacert, cakey, ext, serial, startdate, enddate)
  local key = genkey(name)
  local csr = path(name .. ".csr")
  local cert = path(name .. ".pem")
  must(("req -config %s -new -key %s -subj %s -out %s")
    :format(sh_quote(cnf), sh_quote(key), sh_quote(subj), sh_quote(csr)))
  write(path("serial"), serial .. "\n")
  must(("ca -config %s -batch -notext -cert %s -keyfile %s -in %s -out %s -extfile %s -extensions %s -startdate %s -enddate %s")
    :format(sh_quote(cnf), sh_quote(cacert), sh_quote(cakey), sh_quote(csr), sh_quote(cert), sh_quote(cnf), ext,
            startdate, enddate))
  return cert, key
end

local certs = { dir = dir, password = "secret", openssl = openssl, env = ENV }

certs.ca, certs.ca_key = self_signed_ca("ca", "lua-asyncio test CA")
certs.ca2, certs.ca2_key = self_signed_ca("ca2", "lua-asyncio other CA")

certs.server_serial = "5E1F2A3B"
certs.server_not_before = "Jan  1 00:00:00 2024 GMT"
certs.server_not_after = "Dec 31 23:59:59 2049 GMT"
certs.server_cert, certs.server_key = issue("server", "/C=ZZ/O=lua-asyncio tests/CN=localhost", certs.ca,
  certs.ca_key, "server_ext", certs.server_serial, "20240101000000Z", "20491231235959Z")
certs.expired_cert, certs.expired_key = issue("expired", "/CN=localhost", certs.ca, certs.ca_key,
  "server_ext", "5E1F2A3C", "20200101000000Z", "20200102000000Z")
certs.wrong_cert, certs.wrong_key = issue("wrong", "/CN=wrong.example", certs.ca, certs.ca_key,
  "wrong_ext", "5E1F2A3D", "20240101000000Z", "20491231235959Z")
certs.client_cert, certs.client_key = issue("client", "/CN=client", certs.ca, certs.ca_key,
  "client_ext", "5E1F2A3E", "20240101000000Z", "20491231235959Z")
certs.other_cert, certs.other_key = issue("other", "/CN=localhost", certs.ca2, certs.ca2_key,
  "server_ext", "6E1F2A3F", "20240101000000Z", "20491231235959Z")

certs.server_der = path("server.der")
must(("x509 -in %s -outform DER -out %s"):format(sh_quote(certs.server_cert), sh_quote(certs.server_der)))

certs.server_combined = path("server_combined.pem")
write(certs.server_combined, read(certs.server_cert) .. read(certs.server_key))

certs.server_key_encrypted = path("server_encrypted.key")
must(("pkey -in %s -aes256 -passout pass:%s -out %s")
  :format(sh_quote(certs.server_key), certs.password, sh_quote(certs.server_key_encrypted)))

certs.capath = path("capath")
must_run("cp " .. sh_quote(certs.ca) .. " " .. sh_quote(certs.capath .. "/ca.pem"))
must("rehash " .. sh_quote(certs.capath))

certs.garbage = path("garbage.pem")
write(certs.garbage, "this is not a certificate\n")
certs.missing = path("no-such-file.pem")

-- the PEM text of a file (for cadata)
function certs.read(file)
  return read(file)
end

-- the directory goes when the state closes
local cleanup_dir = dir
certs._sentinel = setmetatable({}, {
  __gc = function()
    os.execute(ENV .. "rm -rf " .. sh_quote(cleanup_dir))
  end,
})

reg[REGISTRY_KEY] = certs
return certs
