// The ID-SDK's own signature code as a second implementation to check idnode's against:
// SignatureInfo.doDigests (SHA-256 and SM3 value digests), SM3Tool, SM2Tool (sign, verify) and
// SignatureStructImpl (a whole SM2SM3 JWS). Compiled against shared/idsdk/lib; one JSON object
// in on stdin, one JSON line out on stdout (the SDK's own println chatter goes to stderr).
//
//   digests   {"alg": "SHA-256"|"SM3", "values": [{"index", "type", "data" (base64), "ttlType",
//              "ttl", "permissions" (int)}]}                    -> {"alg", "digests": [...]}
//   sm3       {"data": base64}                                   -> {"digest": hex}
//   sm2verify {"x", "y", "r", "s": hex, "message": base64}       -> {"valid": bool}
//   sm2sign   {"d": hex, "message": base64}                      -> {"r", "s": hex}
//   sm2jws    {"d": hex, "payload": text}                        -> {"jws": compact JWS}
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Security;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import com.google.gson.Gson;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import org.bouncycastle.jce.ECNamedCurveTable;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.jce.spec.ECNamedCurveParameterSpec;
import org.bouncycastle.jce.spec.ECPrivateKeySpec;
import org.bouncycastle.math.ec.ECPoint;

import cn.ac.caict.iiiiot.id.client.data.IdentifierValue;
import cn.ac.caict.iiiiot.id.client.data.SignatureInfo;
import cn.ac.caict.iiiiot.id.client.security.IdentifierValuesDigest;
import cn.ac.caict.iiiiot.id.client.security.IdentifierValuesDigests;
import cn.ac.caict.iiiiot.id.client.security.SignatureStructImpl;
import cn.ac.caict.iiiiot.id.client.security.gm.SM2KeyPair;
import cn.ac.caict.iiiiot.id.client.security.gm.SM2Tool;
import cn.ac.caict.iiiiot.id.client.security.gm.SM3Tool;

public class IdsdkSigCheck {
    static final String ID = "1234567812345678";

    public static void main(String[] args) throws Exception {
        PrintStream out = System.out;
        System.setOut(System.err);  // SM2Tool and SignatureInfo print their steps
        Security.addProvider(new BouncyCastleProvider());
        JsonObject in = new JsonParser().parse(readAll(System.in)).getAsJsonObject();
        Map<String, Object> res = new LinkedHashMap<>();
        switch (args[0]) {
            case "digests": res = digests(in); break;
            case "sm3": res.put("digest", hex(SM3Tool.hash(b64(in, "data")))); break;
            case "sm2verify": {
                SM2Tool tool = new SM2Tool();
                ECPoint pub = SM2Tool.curve.createPoint(num(in, "x"), num(in, "y"));
                SM2Tool.Signature sig = new SM2Tool.Signature(num(in, "r"), num(in, "s"));
                String m = new String(b64(in, "message"), StandardCharsets.ISO_8859_1);
                res.put("valid", tool.verify(m, sig, ID, pub));
                break;
            }
            case "sm2sign": {
                SM2Tool tool = new SM2Tool();
                BigInteger d = num(in, "d");
                SM2Tool.Signature sig = tool.sign(new String(b64(in, "message"), StandardCharsets.ISO_8859_1),
                                                  ID, new SM2KeyPair(SM2Tool.G.multiply(d).normalize(), d));
                res.put("r", sig.r.toString(16));
                res.put("s", sig.s.toString(16));
                break;
            }
            case "sm2jws": {
                ECNamedCurveParameterSpec spec = ECNamedCurveTable.getParameterSpec("sm2p256v1");
                PrivateKey key = KeyFactory.getInstance("EC", "BC")
                    .generatePrivate(new ECPrivateKeySpec(num(in, "d"), spec));
                SignatureStructImpl jws = new SignatureStructImpl(in.get("payload").getAsString(), key);
                res.put("jws", jws.getSignatureString());
                break;
            }
            default: throw new IllegalArgumentException("unknown command " + args[0]);
        }
        out.println(new Gson().toJson(res));
    }

    static Map<String, Object> digests(JsonObject in) throws Exception {
        List<IdentifierValue> vals = new ArrayList<>();
        for (JsonElement e : in.getAsJsonArray("values")) {
            JsonObject o = e.getAsJsonObject();
            IdentifierValue v = new IdentifierValue(o.get("index").getAsInt(),
                o.get("type").getAsString().getBytes(StandardCharsets.UTF_8), b64(o, "data"));
            v.ttlType = (byte) o.get("ttlType").getAsInt();
            v.ttl = o.get("ttl").getAsInt();
            int p = o.get("permissions").getAsInt();
            v.bAdminRead = (p & 8) != 0;
            v.bAdminWrite = (p & 4) != 0;
            v.bPublicRead = (p & 2) != 0;
            v.bPublicWrite = (p & 1) != 0;
            vals.add(v);
        }
        // SignatureInfo's constructor wants a key and dates it does not use for digests.
        PrivateKey dummy = KeyFactory.getInstance("EC", "BC").generatePrivate(
            new ECPrivateKeySpec(BigInteger.ONE, ECNamedCurveTable.getParameterSpec("sm2p256v1")));
        String alg = in.get("alg").getAsString();
        SignatureInfo info = SignatureInfo.newSignatureInstance(dummy, vals.toArray(new IdentifierValue[0]),
            "300:0.NA/0.118", "0.118/x", "2030-01-01 00:00:00", "2020-01-01 00:00:00",
            "2020-01-01 00:00:00", alg);
        IdentifierValuesDigests d = info.doDigests(vals.toArray(new IdentifierValue[0]), info.digestAlg);
        Map<String, Object> res = new LinkedHashMap<>();
        res.put("alg", d.alg);
        List<Map<String, Object>> list = new ArrayList<>();
        for (IdentifierValuesDigest x : d.digests) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("index", x.index);
            m.put("digest", x.digest);
            list.add(m);
        }
        res.put("digests", list);
        return res;
    }

    static byte[] b64(JsonObject o, String k) {
        return Base64.getDecoder().decode(o.get(k).getAsString());
    }

    static BigInteger num(JsonObject o, String k) {
        return new BigInteger(o.get(k).getAsString(), 16);
    }

    static String hex(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static String readAll(InputStream in) throws Exception {
        ByteArrayOutputStream bo = new ByteArrayOutputStream();
        byte[] buf = new byte[8192];
        int n;
        while ((n = in.read(buf)) > 0) bo.write(buf, 0, n);
        return new String(bo.toByteArray(), StandardCharsets.UTF_8);
    }
}
