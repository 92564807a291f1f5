import { request } from "node:http";

/**
 * PUT to moto's S3 (path style: /bucket or /bucket/key). moto routes by the credential scope in
 * the Authorization header and checks no signature, so a fixed header is enough.
 */
export function s3Put(endpoint: string, path: string, body?: string | Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${endpoint}${path}`, {
      method: "PUT",
      timeout: 30_000,
      headers: { authorization: "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0" },
    });
    req.on("response", (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode ?? 0));
    });
    req.on("timeout", () => req.destroy(new Error(`PUT ${path}: timeout`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** Creates the bucket if needed and uploads each key; throws on any status but 200. */
export async function s3Upload(endpoint: string, bucket: string, objects: Record<string, string | Buffer>): Promise<void> {
  const created = await s3Put(endpoint, `/${bucket}`);
  if (created !== 200 && created !== 409) throw new Error(`moto S3: create bucket ${bucket}: HTTP ${created}`);
  for (const [key, body] of Object.entries(objects)) {
    const status = await s3Put(endpoint, `/${bucket}/${key}`, body);
    if (status !== 200) throw new Error(`moto S3: put ${bucket}/${key}: HTTP ${status}`);
  }
}
