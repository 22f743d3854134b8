# Probe: hard benign look-alikes outside the simulator, written straight in the exchange format
# from the real corpora: four translation / rewriting / proofreading jobs over long real texts
# (300 a night, three nights) and three broad step-by-step evaluation suites run once a day.
# Usage (from the project root): python3 bench/probes/documents_and_eval_suite.py SEED OUT.jsonl [NOISE]
# NOISE: log standard deviation of each document's answer/source length ratio (default 0).
import json, random, sys, datetime
random.seed(int(sys.argv[1]) if len(sys.argv)>1 else 1)
NOISE=float(sys.argv[3]) if len(sys.argv)>3 else 0.0
D='../shared/data/corpora/'
docs=[];openings=[]
for l in open(D+'benign-sharegpt.jsonl'):
    c=json.loads(l)
    for t in c['turns']:
        if t['role']=='assistant' and len(t['content'])>1500: docs.append(t['content'])
    u=[t for t in c['turns'] if t['role']=='user']
    if u and 20<len(u[0]['content'])<600: openings.append(u[0]['content'])
math=[json.loads(l) for l in open(D+'math-gsm8k-train.jsonl')]
seeds=[json.loads(l) for l in open(D+'instruct-selfinstruct-seeds.jsonl')]
def ts(ms): return datetime.datetime.utcfromtimestamp(ms/1000).strftime('%Y-%m-%dT%H:%M:%S.')+'%03dZ'%(ms%1000)
T0=int(datetime.datetime(2026,3,1).timestamp()*1000)
out=open(sys.argv[2],'w')
n=[0]
def ex(t, acct, prompt, ptoks, ctoks, mt, temp, ip, age_days):
    n[0]+=1
    meta={"payment_fingerprint":"pf_"+acct,"signup_ts":ts(T0-int(age_days*86400e3))}
    line={"id":"req_p%08d"%n[0],"ts":ts(t),"account":acct,"key":"key_"+acct,"ip":ip,"meta":meta,
      "endpoint":"/v1/chat/completions","status":200,"latency_ms":900.0,
      "request":{"model":"gpt-4o","messages":[{"role":"user","content":prompt}],"max_tokens":mt,"temperature":temp},
      "response":{"choices":[{"index":0,"message":{"role":"assistant","content":"x "*min(ctoks,50)},"finish_reason":"stop"}],
                  "usage":{"prompt_tokens":ptoks,"completion_tokens":ctoks}}}
    out.write(json.dumps(line)+"\n")
events=[]
# A: nightly translation of long documents, three nights
for k,(task,ratio) in enumerate([("Translate the following text into French.\n\n{}",1.15),("Translate the following document into German, keeping its formatting.\n\n{}",1.2),("Rewrite the following text in plain English for a general audience.\n\n{}",0.9),("Proofread and correct the following text. Return the corrected text only.\n\n{}",1.0)]):
    acct="probe_transform_%d"%k
    items=random.sample(docs,900)
    for night in range(3):
        t=T0+night*86400000+2*3600000
        for d in items[night*300:(night+1)*300]:
            p=task.format(d); pt=len(p)//4
            t+=random.randint(800,4000)
            events.append((t,acct,p,pt,int(len(d)/4*ratio*random.lognormvariate(0,NOISE)),4096,0.0,"10.1.0.%d"%k,400))
# C: broad step-by-step eval suite, run once each day on a fresh sample, answers long
for k in range(3):
    acct="probe_evalsuite_%d"%k
    for day in range(3):
        t=T0+day*86400000+(10+k)*3600000
        items=[("Question: %s\nLet's think step by step."%m['question'] if 'question' in m else None) for m in random.sample(math,150)]
        items+=["%s\n\nThink step by step, then give the final answer."%(s.get('instruction') or s.get('prompt') or '') for s in random.sample(seeds,100)]
        items+=["%s\n\nLet's think step by step."%o for o in random.sample(openings,150)]
        for p in items:
            if not p: continue
            t+=random.randint(200,2500)
            events.append((t,acct,p,len(p)//4,random.randint(300,700),2048,0.0,"10.2.0.%d"%k,300))
events.sort()
for e in events: ex(*e)
print(n[0],"exchanges", file=sys.stderr)
