// Writes tests/vectors/hdlkeys.json: what Handle.Net's hdllib 9.2.0 and CAICT's ID-SDK 2.0.3 make
// of the keys in this folder (Handle binary encodings, challenge answers, signatures), so
// tests/crypto/test_hdlkeys.py checks idnode/crypto/hdlkeys.py against the real clients without
// needing Java. Run once, from the repository root (needs default-jdk-headless and the jars of
// /work/shared/handle-client and /work/shared/idsdk):
//
//   tests/vectors/hdlkeys/make.sh
//
// The key files: {rsa,dsa,sm2}_*.pem, {rsa,dsa}_priv.bin, {rsa,dsa}_pub.hdl.bin and negative/ are
// copies of /work/shared/idsdk/keys (made by its keygen.sh with the ID-SDK's own loaders);
// hdllib_{rsa,dsa}_{priv,pub}.bin were made by `/work/shared/handle-client/run.sh genkey` (RSA
// 2048, DSA 2048). Test keys only: nothing here protects anything.
import java.io.File;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.security.*;
import java.security.interfaces.*;
import java.security.spec.*;
import java.util.*;

import net.handle.hdllib.AbstractMessage;
import net.handle.hdllib.ChallengeResponse;
import net.handle.hdllib.Encoder;
import net.handle.hdllib.PublicKeyAuthenticationInfo;
import net.handle.hdllib.ResolutionRequest;
import net.handle.hdllib.Util;

public class HdlKeyVectors {
    static final byte[] NONCE = hex("000102030405060708090a0b0c0d0e0f");
    static final byte[] DATA = "idnode hdlkeys known-answer data \u6807\u8bc6".getBytes(StandardCharsets.UTF_8);
    static final byte[] ADMIN = "0.118.8/ADMIN".getBytes(StandardCharsets.UTF_8);
    static File dir;
    static final StringBuilder out = new StringBuilder();

    public static void main(String[] args) throws Exception {
        dir = new File(args[0]);
        Map<String, PublicKey> pubs = new LinkedHashMap<>();
        Map<String, PrivateKey> privs = new LinkedHashMap<>();
        // (1) the ID-SDK's keys: public from PEM (SPKI), private from the hdllib-format .bin
        for (String n : new String[] {"rsa", "dsa"}) {
            pubs.put(n, x509(n + "_pub.pem"));
            privs.put(n, handlePrivate(n + "_priv.bin"));
        }
        // (2) keys hdllib generated (genkey): both halves in hdllib's own formats
        for (String n : new String[] {"rsa", "dsa"}) {
            pubs.put("hdllib_" + n, Util.getPublicKeyFromBytes(read("hdllib_" + n + "_pub.bin")));
            privs.put("hdllib_" + n, handlePrivate("hdllib_" + n + "_priv.bin"));
        }
        // (3) more shapes for the encoder: other sizes, e = 3, DSA 1024..3072 (seeded, but the
        // JDK's generators are not guaranteed reproducible: these are stored, not regenerated)
        SecureRandom rnd = SecureRandom.getInstance("SHA1PRNG");
        rnd.setSeed(20261201L);
        KeyPairGenerator rg = KeyPairGenerator.getInstance("RSA");
        rg.initialize(new RSAKeyGenParameterSpec(3072, RSAKeyGenParameterSpec.F4), rnd);
        pubs.put("gen_rsa3072", rg.generateKeyPair().getPublic());
        rg.initialize(new RSAKeyGenParameterSpec(4096, RSAKeyGenParameterSpec.F0), rnd);
        pubs.put("gen_rsa4096_e3", rg.generateKeyPair().getPublic());
        rg.initialize(new RSAKeyGenParameterSpec(1024, RSAKeyGenParameterSpec.F4), rnd);
        pubs.put("gen_rsa1024_weak", rg.generateKeyPair().getPublic());
        KeyPairGenerator dg = KeyPairGenerator.getInstance("DSA");
        for (int bits : new int[] {1024, 2048, 3072}) {
            for (int i = 0; i < 2; i++) {
                dg.initialize(bits, rnd);
                pubs.put("gen_dsa" + bits + "_" + i, dg.generateKeyPair().getPublic());
            }
        }

        out.append("{\n  \"comment\": ").append(q("Made by tests/vectors/hdlkeys/HdlKeyVectors.java (make.sh) with "
            + "hdllib 9.2.0 (/work/shared/handle-client/hdlclient.jar) and ID-SDK 2.0.3 (/work/shared/idsdk/lib) on "
            + System.getProperty("java.vm.name") + " " + System.getProperty("java.version")
            + ". keys: SPKI DER as the JDK encodes the key and hdllib's Util.getBytesFromPublicKey. "
            + "challenge_answers: the exact answer bytes ([len]hash name, [len]signature over nonce||digest) "
            + "of hdllib's PublicKeyAuthenticationInfo.authenticate and the ID-SDK's "
            + "PubKeyAuthentication.authenticateAction. signatures: plain JCA signatures of data_hex."))
            .append(",\n  \"data_hex\": ").append(q(hx(DATA))).append(",\n  \"keys\": {");
        String sep = "\n";
        for (Map.Entry<String, PublicKey> e : pubs.entrySet()) {
            PublicKey k = e.getValue();
            out.append(sep).append("    ").append(q(e.getKey())).append(": {\"type\": ").append(q(k.getAlgorithm()))
                .append(", \"bits\": ").append(bits(k))
                .append(", \"spki_der_hex\": ").append(q(hx(k.getEncoded())))
                .append(", \"hdllib_bytes_hex\": ").append(q(hx(Util.getBytesFromPublicKey(k)))).append("}");
            sep = ",\n";
        }
        out.append("\n  },\n  \"challenge_answers\": [");
        sep = "\n";
        for (Map.Entry<String, PrivateKey> e : privs.entrySet()) {
            // hdllib picks the hash from the challenge's protocol version (Util.getDefaultSigId):
            // 2.11 as hdllib 9 speaks, 2.10 as the ID-SDK's answer is sent, 2.6 before SHA-256.
            for (int minor : new int[] {11, 10, 6}) {
                out.append(sep).append(hdllibAnswer(e.getKey(), e.getValue(), minor));
                sep = ",\n";
            }
            if (!e.getKey().startsWith("hdllib_")) out.append(sep).append(sdkAnswer(e.getKey()));
        }
        out.append("\n  ],\n  \"signatures\": [");
        sep = "\n";
        String[][] algs = {{"SHA256withRSA", "SHA-256"}, {"SHA1withRSA", "SHA1"}, {"SHA384withRSA", "SHA-384"},
                           {"SHA512withRSA", "SHA-512"}, {"SHA256withDSA", "SHA-256"}, {"SHA1withDSA", "SHA1"}};
        for (Map.Entry<String, PrivateKey> e : privs.entrySet()) {
            for (String[] a : algs) {
                if (!a[0].endsWith(e.getValue().getAlgorithm())) continue;
                Signature s = Signature.getInstance(a[0]);
                try {
                    s.initSign(e.getValue());
                } catch (InvalidKeyException x) {
                    continue;  // SHA1withDSA and a 2048-bit key: the JDK will not
                }
                s.update(DATA);
                out.append(sep).append("    {\"key\": ").append(q(e.getKey())).append(", \"java_alg\": ").append(q(a[0]))
                    .append(", \"hash_name\": ").append(q(a[1])).append(", \"signature_hex\": ").append(q(hx(s.sign()))).append("}");
                sep = ",\n";
            }
        }
        out.append("\n  ]\n}\n");
        // the SDK prints progress to stdout, so the vectors go to a file
        Files.write(new File(args[1]).toPath(), out.toString().getBytes(StandardCharsets.UTF_8));
    }

    static String hdllibAnswer(String name, PrivateKey priv, int minor) throws Exception {
        ResolutionRequest req = new ResolutionRequest(ADMIN, null, null, null);
        req.majorProtocolVersion = 2;
        req.minorProtocolVersion = (byte) minor;
        ChallengeResponse ch = new ChallengeResponse(req);
        ch.majorProtocolVersion = 2;
        ch.minorProtocolVersion = (byte) minor;
        ch.takeDigestOfRequest(req);
        ch.nonce = NONCE.clone();
        byte[] answer;
        try {
            answer = new PublicKeyAuthenticationInfo(ADMIN, 300, priv).authenticate(ch, req);
        } catch (Exception e) {
            // e.g. the JDK refuses SHA1withDSA for a 2048-bit DSA key: such a client cannot log in
            Throwable c = e;
            while (c.getCause() != null) c = c.getCause();
            return "    {\"client\": \"hdllib\", \"key\": " + q(name) + ", \"version\": " + q("2." + minor)
                + ", \"error\": " + q(c.toString()) + "}";
        }
        return answer("hdllib", name, "2." + minor, ch.nonce, ch.requestDigest, answer);
    }

    static String sdkAnswer(String name) throws Exception {
        // the SDK's login path exactly: its own key loader on the PEM file, its own signer
        PrivateKey pk = cn.ac.caict.iiiiot.id.client.utils.Util.getPrivateKeyFromFile(new File(dir, name + "_priv.pem").getPath(), null);
        cn.ac.caict.iiiiot.id.client.security.PubKeyAuthentication auth =
            new cn.ac.caict.iiiiot.id.client.security.PubKeyAuthentication(ADMIN, 300, pk);
        cn.ac.caict.iiiiot.id.client.core.LoginIDSystemRequest req =
            new cn.ac.caict.iiiiot.id.client.core.LoginIDSystemRequest(ADMIN, 300, auth);
        req.returnRequestDigest = true;
        cn.ac.caict.iiiiot.id.client.core.ChallengeResponse ch = new cn.ac.caict.iiiiot.id.client.core.ChallengeResponse(2001, NONCE.clone());
        ch.rdHashType = cn.ac.caict.iiiiot.id.client.utils.Common.HASH_CODE_SHA256;
        ch.requestDigest = cn.ac.caict.iiiiot.id.client.utils.Util.doSHA256Digest(req.getEncodedMessageBody());
        byte[] answer = auth.authenticateAction(ch, req);
        return answer("idsdk", name, "2.10", ch.nonce, ch.requestDigest, answer);
    }

    static String answer(String client, String key, String version, byte[] nonce, byte[] digest, byte[] answer) throws Exception {
        byte[] alg = Encoder.readByteArray(answer, 0);
        byte[] sig = Encoder.readByteArray(answer, 4 + alg.length);
        return "    {\"client\": " + q(client) + ", \"key\": " + q(key) + ", \"version\": " + q(version)
            + ", \"nonce_hex\": " + q(hx(nonce)) + ", \"digest_hex\": " + q(hx(digest))
            + ", \"hash_name\": " + q(new String(alg, StandardCharsets.UTF_8))
            + ", \"signature_hex\": " + q(hx(sig)) + ", \"answer_hex\": " + q(hx(answer)) + "}";
    }

    static PublicKey x509(String file) throws Exception {
        String pem = new String(read(file), StandardCharsets.US_ASCII).replaceAll("-----[A-Z ]+-----", "").replaceAll("\\s", "");
        byte[] der = Base64.getDecoder().decode(pem);
        try {
            return KeyFactory.getInstance("RSA").generatePublic(new X509EncodedKeySpec(der));
        } catch (InvalidKeySpecException e) {
            return KeyFactory.getInstance("DSA").generatePublic(new X509EncodedKeySpec(der));
        }
    }

    static PrivateKey handlePrivate(String file) throws Exception {
        return Util.getPrivateKeyFromBytes(Util.decrypt(read(file), null), 0);
    }

    static int bits(PublicKey k) {
        if (k instanceof RSAPublicKey) return ((RSAPublicKey) k).getModulus().bitLength();
        return ((DSAPublicKey) k).getParams().getP().bitLength();
    }

    static byte[] read(String file) throws Exception {
        return Files.readAllBytes(new File(dir, file).toPath());
    }

    static String q(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static String hx(byte[] b) {
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        return sb.toString();
    }

    static byte[] hex(String s) {
        byte[] b = new byte[s.length() / 2];
        for (int i = 0; i < b.length; i++) b[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        return b;
    }
}
