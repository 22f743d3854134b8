# Probe (an attack): three chain-of-thought harvests whose wrappers are in Chinese, over the
# broad corpora, in human hours from aged accounts.
# Usage (from the project root): python3 bench/probes/chinese_cot_harvest.py OUT.jsonl
import json, random, sys, datetime, math
random.seed(4); OUT=sys.argv[1]
D='../shared/data/corpora/'
qs=[]
for l in open(D+'benign-sharegpt.jsonl'):
    c=json.loads(l); u=[t for t in c['turns'] if t['role']=='user']
    if u and len(u[0]['content'])<1500: qs.append(u[0]['content'])
qs+=[j['question'] for j in map(json.loads,open(D+'math-gsm8k-train.jsonl'))][:3000]
def ts(ms): return datetime.datetime.utcfromtimestamp(ms/1000).strftime('%Y-%m-%dT%H:%M:%S.')+'%03dZ'%(ms%1000)
T0=int(datetime.datetime(2026,3,1).timestamp()*1000)
wr=["请一步一步地思考，并详细展示你的推理过程：\n\n{}","{}\n\n请逐步推理，写出完整的思考过程，然后给出最终答案。"]
ev=[]
for k in range(3):
    acct="probe_zh_cot_%d"%k; w=wr[k%2]
    t=T0
    n=0
    while n<1200:
        t+=int(random.expovariate(1/140.0)*1000)
        h=((t-T0)/3600000+8)%24
        if h<8: continue
        q=random.choice(qs); p=w.format(q)
        ev.append((t,{"id":"req_%s_%d"%(acct,n),"ts":ts(t),"account":acct,"key":"k_"+acct,"ip":"36.110.%d.7"%k,
          "meta":{"payment_fingerprint":"pf_"+acct,"signup_ts":ts(T0-300*86400000)},
          "endpoint":"/v1/chat/completions","status":200,"latency_ms":900.0,
          "request":{"model":"gpt-4o","messages":[{"role":"user","content":p}],"max_tokens":2048,"temperature":0.7},
          "response":{"choices":[{"index":0,"message":{"role":"assistant","content":"推理"*50},"finish_reason":"stop"}],
             "usage":{"prompt_tokens":len(p)//3,"completion_tokens":random.randint(350,700)}}}))
        n+=1
ev.sort(key=lambda e:e[0])
with open(OUT,'w') as f:
    for _,e in ev: f.write(json.dumps(e, ensure_ascii=False)+"\n")
